package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func TestParseHost(t *testing.T) {
	for _, c := range []struct {
		h     string
		tls   bool
		proto string
		addr  string
	}{
		{"unix:///run/a.sock", false, "unix", "/run/a.sock"},
		{"tcp://127.0.0.1:1234", false, "tcp", "127.0.0.1:1234"},
		{"tcp://127.0.0.1", false, "tcp", "127.0.0.1:2375"},
		{"tcp://127.0.0.1", true, "tcp", "127.0.0.1:2376"},
		{"tcp://:2376", true, "tcp", "127.0.0.1:2376"},
		{"tcp://", false, "tcp", "127.0.0.1:2375"},
		{"tcp://0.0.0.0:2376", true, "tcp", "0.0.0.0:2376"},
		{"tcp://[::1]", true, "tcp", "[::1]:2376"},
		{"tcp://localhost:99", false, "tcp", "localhost:99"},
	} {
		e, err := parseHost(c.h, c.tls)
		if err != nil || e.proto != c.proto || e.addr != c.addr {
			t.Errorf("parseHost(%q, tls %v) = %v, %v; want %s://%s", c.h, c.tls, e, err, c.proto, c.addr)
		}
	}
	for _, h := range []string{"unix://relative.sock", "/run/a.sock", "fd://", "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000",
		"tcp://127.0.0.1:x", "tcp://127.0.0.1:", "tcp://127.0.0.1:2375/path", "tcp://u@127.0.0.1", "http://127.0.0.1:2375", "127.0.0.1:2375"} {
		if _, err := parseHost(h, false); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("parseHost(%q): %v, want invalid argument", h, err)
		}
	}
}

// FuzzParseHost: any -H value parses or is refused as invalid; what
// parses names a unix path or a tcp HOST:PORT that parses again the same.
func FuzzParseHost(f *testing.F) {
	for _, s := range []string{"unix:///run/a.sock", "tcp://127.0.0.1:2376", "tcp://[::1]", "tcp://:1", "fd://", "tcp://a%zz"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, h string, tlsOn bool) {
		e, err := parseHost(h, tlsOn)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("parseHost(%q): %v, not an invalid argument", h, err)
			}
			return
		}
		again, err := parseHost(e.String(), tlsOn)
		if err != nil || again != e {
			t.Fatalf("parseHost(%q) = %v, which parses again as %v, %v", h, e, again, err)
		}
	})
}

func TestEndpoints(t *testing.T) {
	_, err := endpoints([]string{"unix:///run/a.sock", "tcp://127.0.0.1:2375"}, remoteFlags{})
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "--insecure-tcp") || !strings.Contains(err.Error(), "--tlsverify") {
		t.Fatalf("plain tcp without --insecure-tcp: %v, want a refusal naming --tlsverify and --insecure-tcp", err)
	}
	eps, err := endpoints([]string{"unix:///run/a.sock", "tcp://127.0.0.1"}, remoteFlags{insecureTCP: true})
	if err != nil || len(eps) != 2 || eps[1].addr != "127.0.0.1:2375" {
		t.Fatalf("with --insecure-tcp: %v %v", eps, err)
	}
	if eps, err = endpoints([]string{"tcp://127.0.0.1"}, remoteFlags{tlsVerify: true}); err != nil || eps[0].addr != "127.0.0.1:2376" {
		t.Fatalf("with --tlsverify: %v %v", eps, err)
	}
	for _, bad := range []struct {
		hosts []string
		r     remoteFlags
	}{
		{[]string{"tcp://127.0.0.1"}, remoteFlags{tls: true, insecureTCP: true}},
		{[]string{"tcp://127.0.0.1"}, remoteFlags{tls: true}}, // TLS without client certificates
		{nil, remoteFlags{}},
		{[]string{"unix:///a.sock", "unix:///a.sock"}, remoteFlags{}},
	} {
		if _, err := endpoints(bad.hosts, bad.r); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("endpoints(%v, %+v): %v, want invalid argument", bad.hosts, bad.r, err)
		}
	}
}

// TestLogged: the debug log of a call has its method, path, status and
// duration, and the handler still reaches the flusher.
func TestLogged(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := logged(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(http.Flusher); !ok {
			t.Error("the recorder hides http.Flusher")
		}
		if _, ok := w.(http.Hijacker); !ok {
			t.Error("the recorder hides http.Hijacker")
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1.41/containers/nosuch/json?size=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	line := buf.String()
	for _, want := range []string{"msg=api", "method=GET", "path=\"/v1.41/containers/nosuch/json?size=1\"", "status=404", "duration=", "remote=127.0.0.1:"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}

// TestServerTLS: --tlsverify requires a client certificate of the CA and
// TLS 1.2 or newer; --tls alone asks for none; bad files are refused.
func TestServerTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir)
	verify, err := serverTLS(remoteFlags{tlsVerify: true, caFile: p.ca, certFile: p.serverCert, keyFile: p.serverKey})
	if err != nil {
		t.Fatal(err)
	}
	if verify.ClientAuth != tls.RequireAndVerifyClientCert || verify.MinVersion != tls.VersionTLS12 || verify.ClientCAs == nil {
		t.Fatalf("--tlsverify: %+v", verify)
	}
	only, err := serverTLS(remoteFlags{tls: true, caFile: filepath.Join(dir, "none.pem"), certFile: p.serverCert, keyFile: p.serverKey})
	if err != nil || only.ClientAuth != tls.NoClientCert {
		t.Fatalf("--tls: %+v %v", only, err)
	}
	for what, r := range map[string]remoteFlags{
		"missing CA":       {tlsVerify: true, caFile: filepath.Join(dir, "none.pem"), certFile: p.serverCert, keyFile: p.serverKey},
		"CA without a PEM": {tlsVerify: true, caFile: p.serverKey, certFile: p.serverCert, keyFile: p.serverKey},
		"key of another":   {tls: true, certFile: p.serverCert, keyFile: p.clientKey},
	} {
		if _, err := serverTLS(r); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", what, err)
		}
	}
	// A TLS 1.1 client is refused at the handshake, on loopback.
	l, err := tls.Listen("tcp", "127.0.0.1:0", verify)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(p.ca)
	pool.AppendCertsFromPEM(caPEM)
	client, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	dial := func(maxVersion uint16) error {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{client}, MaxVersion: maxVersion})
		if err == nil {
			// TLS 1.3 reports a refused client certificate at the first read.
			_, err = c.Read(make([]byte, 1))
			c.Close()
			if errors.Is(err, io.EOF) {
				err = nil
			}
		}
		return err
	}
	if err := dial(tls.VersionTLS12); err != nil {
		t.Fatalf("a TLS 1.2 client with the CA's certificate: %v", err)
	}
	if err := dial(tls.VersionTLS11); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("a TLS 1.1 client: %v, want a protocol version refusal", err)
	}
}
