package logs

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tlsFiles writes a CA and a server certificate for 127.0.0.1 signed by
// it; it returns the CA file and the server's tls.Config.
func tlsFiles(t *testing.T) (string, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}}
}

// TestSyslogTransports sends through each transport to a listener on
// loopback and checks the bytes that arrive: datagrams one message each,
// tcp newline-framed, tcp+tls with rfc5424 octet-counted and verified
// against the CA given.
func TestSyslogTransports(t *testing.T) {
	i := Info{ContainerID: "0123456789abcdef", ContainerName: "web", DaemonName: "layerlabd"}
	msg := &Message{Line: []byte("hello"), Stream: "stdout", Time: time.Now()}
	send := func(opts map[string]string) {
		t.Helper()
		s, err := OpenSyslog(i, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Log(msg); err != nil {
			t.Fatal(err)
		}
		if err := s.Log(&Message{Line: []byte("oops"), Stream: "stderr", Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	pid := strconv.Itoa(os.Getpid())

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	send(map[string]string{"syslog-address": "udp://" + pc.LocalAddr().String(), "tag": "{{.Name}}"})
	buf := make([]byte, 2048)
	for _, want := range []string{"<30>", "<27>"} {
		pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		got := string(buf[:n])
		if err != nil || !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " web["+pid+"]: "+map[string]string{"<30>": "hello", "<27>": "oops"}[want]+"\n") {
			t.Errorf("udp datagram %q, %v; want %s... web[%s]: ...", got, err, want, pid)
		}
	}

	sock := filepath.Join(t.TempDir(), "log.sock")
	uc, err := net.ListenPacket("unixgram", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	send(map[string]string{"syslog-address": "unix://" + sock, "syslog-format": "rfc5424"})
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := uc.ReadFrom(buf); err != nil || !strings.HasSuffix(string(buf[:n]), " 0123456789ab "+pid+" 0123456789ab - hello\n") || !strings.HasPrefix(string(buf[:n]), "<30>1 ") {
		t.Errorf("unix datagram %q, %v", buf[:n], err)
	}

	stream := func(l net.Listener) chan string {
		got := make(chan string, 1)
		go func() {
			c, err := l.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var all strings.Builder
			br := bufio.NewReader(c)
			for {
				b, err := br.ReadByte()
				if err != nil {
					break
				}
				all.WriteByte(b)
			}
			got <- all.String()
		}()
		return got
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	got := stream(tl)
	send(map[string]string{"syslog-address": "tcp://" + tl.Addr().String(), "syslog-format": "rfc3164", "syslog-facility": "local0"})
	if s := <-got; !strings.HasPrefix(s, "<134>") || strings.Count(s, "\n") != 2 || !strings.Contains(s, "hello\n<131>") {
		t.Errorf("tcp stream %q, want two newline-framed messages at local0", s)
	}

	caFile, srvConf := tlsFiles(t)
	ll, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	got = stream(ll)
	send(map[string]string{"syslog-address": "tcp+tls://" + ll.Addr().String(), "syslog-format": "rfc5424micro", "syslog-tls-ca-cert": caFile})
	s := <-got
	first, rest, _ := strings.Cut(s, " ")
	n, err := strconv.Atoi(first)
	if err != nil || n > len(rest) || !strings.HasSuffix(rest[:n], "- hello\n") || !strings.HasPrefix(rest[n:], strconv.Itoa(len(rest)-n-len(strconv.Itoa(len(rest)-n))-1)+" <27>1 ") {
		t.Errorf("tls stream %q, want two octet-counted messages", s)
	}
	// Without the CA the server is not trusted: the open fails.
	go func() {
		if c, err := ll.Accept(); err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if _, err := OpenSyslog(i, map[string]string{"syslog-address": "tcp+tls://" + ll.Addr().String()}); err == nil {
		t.Error("tcp+tls to a server no known CA signed: no error")
	}
}

// TestDualLogging: a remote driver keeps the local cache docker logs
// reads, unless cache-disabled.
func TestDualLogging(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	i := Info{ContainerID: "0123456789abcdef", Dir: t.TempDir()}
	opts := map[string]string{"syslog-address": "udp://" + pc.LocalAddr().String(), "cache-max-size": "1k"}
	l, err := New(i, SyslogDriver, opts)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(l)
	w.Write("stdout", []byte("one\ntwo\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(i, SyslogDriver, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := readSource(t, src, ReadOptions{Tail: -1}); strings.Join(got, "|") != "stdout:one\n|stdout:two\n" {
		t.Errorf("cache read %q", got)
	}
	if err := Remove(i); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(i.Dir); len(ents) != 0 {
		t.Errorf("Remove left %v", ents)
	}
	opts["cache-disabled"] = "true"
	if l, err = New(i, SyslogDriver, opts); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if ents, _ := os.ReadDir(i.Dir); len(ents) != 0 {
		t.Errorf("cache-disabled still wrote %v", ents)
	}
}
