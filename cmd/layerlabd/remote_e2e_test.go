package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/feature"
)

// withLoopback makes e start layerlabd through a script that brings lo up
// first: startDaemon's `unshare --net` namespace has lo down, and a tcp
// listener on 127.0.0.1 needs it. The script execs layerlabd, so the
// daemon keeps the pid startDaemon knows.
func withLoopback(t testing.TB, e *testEnv) {
	t.Helper()
	script := filepath.Join(e.tmp, "layerlabd-lo")
	body := fmt.Sprintf("#!/bin/sh\nip link set lo up || exit 1\nexec %s \"$@\"\n", e.bin)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	e.bin = script
}

// inNetns is a command run in the network namespace of process pid.
func inNetns(pid int, name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--", name}, args...)...)
}

// remoteDocker runs the docker CLI in the daemon's network namespace with
// args (its -H and TLS flags included) and returns its output and exit
// code.
func remoteDocker(t *testing.T, e testEnv, args ...string) (string, int) {
	t.Helper()
	return cli{t: t, dir: e.tmp, d: e.d, netns: e.d.cmd.Process.Pid}.run(args...)
}

// pki is the certificates a TLS test uses, as PEM files.
type pki struct {
	ca, serverCert, serverKey string
	clientCert, clientKey     string // signed by ca
	otherCert, otherKey       string // signed by another CA
	expiredCert, expiredKey   string // signed by ca, expired an hour ago
}

// newPKI makes a CA, a server certificate for 127.0.0.1 (and registryIP,
// for the registry test's TLS registry) and the client
// certificates, ECDSA P-256, in dir.
func newPKI(t *testing.T, dir string) pki {
	t.Helper()
	now := time.Now()
	serial := int64(1)
	issue := func(name, cn string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.Subject = pkix.Name{CommonName: cn}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPath, keyPath := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			t.Fatal(err)
		}
		return cert, key, certPath, keyPath
	}
	ca := func() *x509.Certificate {
		return &x509.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	}
	leaf := func(usage x509.ExtKeyUsage, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{NotBefore: now.Add(-2 * time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(registryIP)}}
	}
	var p pki
	caCert, caKey, caPath, _ := issue("ca", "ca", ca(), nil, nil)
	// The other CA has the same name: a client sends only a certificate
	// whose issuer the server lists as acceptable, so a stranger's with
	// another issuer name would not even reach the server's check.
	otherCA, otherKey, _, _ := issue("other-ca", "ca", ca(), nil, nil)
	p.ca = caPath
	_, _, p.serverCert, p.serverKey = issue("server", "server", leaf(x509.ExtKeyUsageServerAuth, now.Add(time.Hour)), caCert, caKey)
	_, _, p.clientCert, p.clientKey = issue("client", "client", leaf(x509.ExtKeyUsageClientAuth, now.Add(time.Hour)), caCert, caKey)
	_, _, p.otherCert, p.otherKey = issue("stranger", "stranger", leaf(x509.ExtKeyUsageClientAuth, now.Add(time.Hour)), otherCA, otherKey)
	_, _, p.expiredCert, p.expiredKey = issue("expired", "expired", leaf(x509.ExtKeyUsageClientAuth, now.Add(-time.Hour)), caCert, caKey)
	return p
}

// TestEndToEndRemoteAPI serves the API on a unix socket and on tcp with
// --tlsverify at once (-H twice, the TLS port by default) and drives it
// with the docker CLI in the daemon's network namespace: the right client
// certificate is let in; none, another CA's and an expired one are not.
// -D logs each call with its status and duration. Plain tcp is refused
// without --insecure-tcp and served, with a loud warning, with it. A
// daemon.json with the TLS settings works; the same key as a flag is
// refused.
func TestEndToEndRemoteAPI(t *testing.T) {
	e := newTestEnv(t)
	withLoopback(t, &e)
	p := newPKI(t, t.TempDir())
	e.opts = []string{"-H", "tcp://127.0.0.1", "--tlsverify", "--tlscacert", p.ca, "--tlscert", p.serverCert, "--tlskey", p.serverKey}
	e.start(t, "tls.log")
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	c.expect(0, "1.41", "version", "--format", "{{.Server.APIVersion}}")

	tlsArgs := func(cert, key string) []string {
		args := []string{"--tlsverify", "--tlscacert", p.ca, "-H", "tcp://127.0.0.1:2376"}
		if cert != "" {
			args = append(args, "--tlscert", cert, "--tlskey", key)
		}
		return append(args, "version", "--format", "{{.Server.APIVersion}}")
	}
	if out, code := remoteDocker(t, e, tlsArgs(p.clientCert, p.clientKey)...); code != 0 || strings.TrimSpace(out) != "1.41" {
		t.Fatalf("docker --tlsverify with the CA's client certificate: exit %d:\n%s\nlayerlabd log:\n%s", code, out, e.d.logText())
	}
	for _, bad := range []struct {
		what, cert, key, logs string
	}{
		{"no client certificate", "", "", "client didn't provide a certificate"},
		{"another CA's certificate", p.otherCert, p.otherKey, "unknown authority"},
		{"an expired certificate", p.expiredCert, p.expiredKey, "certificate has expired"},
	} {
		out, code := remoteDocker(t, e, tlsArgs(bad.cert, bad.key)...)
		if code == 0 || strings.Contains(out, "1.41") {
			t.Errorf("docker --tlsverify with %s: exit %d, want a refusal:\n%s", bad.what, code, out)
		}
		t.Logf("docker --tlsverify with %s: exit %d: %s", bad.what, code, out)
		eventually(t, 5*time.Second, "the daemon logs the refused handshake ("+bad.logs+")", func() bool {
			return strings.Contains(e.d.logText(), "level=WARN msg=\"http: TLS handshake error") && strings.Contains(e.d.logText(), bad.logs)
		})
	}
	// -D: one line per call, with status and duration, the client's
	// certificate named over TLS.
	debug := regexp.MustCompile(`level=DEBUG msg=api method=GET path=/v1\.41/version status=200 duration=[0-9.]+[µnm]?s remote=127\.0\.0\.1:\d+ client="CN=client"`)
	if !debug.MatchString(e.d.logText()) {
		t.Errorf("the -D log has no line matching %s:\n%s", debug, e.d.logText())
	}
	if !regexp.MustCompile(`msg=api method=HEAD path=/_ping status=200 duration=`).MatchString(e.d.logText()) {
		t.Errorf("the -D log lacks the CLI's HEAD /_ping:\n%s", e.d.logText())
	}
	e.d.terminate(t)

	// Plain tcp: refused without the flag, before anything is opened.
	refused := startDaemon(t, e.bin, filepath.Join(e.tmp, "plain-refused.log"), "-H", "tcp://127.0.0.1",
		"--data-root", filepath.Join(e.tmp, "refused"), "--exec-root", filepath.Join(e.tmp, "exec-refused"))
	<-refused.exited
	if msg := refused.logText(); refused.err == nil || !strings.Contains(msg, "--insecure-tcp") || !strings.Contains(msg, "--tlsverify") {
		t.Fatalf("plain tcp without --insecure-tcp: %v, want a refusal naming --tlsverify and --insecure-tcp:\n%s", refused.err, msg)
	}
	if _, err := os.Stat(filepath.Join(e.tmp, "refused")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused daemon made its data root: %v", err)
	}
	e.opts = []string{"-H", "tcp://127.0.0.1", "--insecure-tcp"}
	e.start(t, "plain.log")
	if out, code := remoteDocker(t, e, "-H", "tcp://127.0.0.1:2375", "version", "--format", "{{.Server.APIVersion}}"); code != 0 || strings.TrimSpace(out) != "1.41" {
		t.Fatalf("docker -H tcp://127.0.0.1:2375 with --insecure-tcp: exit %d:\n%s", code, out)
	}
	if log := e.d.logText(); !strings.Contains(log, "level=WARN msg=\"!!! SECURITY WARNING: SERVING THE API ON PLAIN TCP") || !strings.Contains(log, "host=tcp://127.0.0.1:2375") {
		t.Errorf("no loud warning of plain tcp in the log:\n%s", log)
	}
	e.d.terminate(t)

	// The TLS settings from a daemon.json.
	cfgFile := filepath.Join(e.tmp, "daemon.json")
	cfgJSON, _ := json.Marshal(map[string]any{"tlsverify": true, "tlscacert": p.ca, "tlscert": p.serverCert, "tlskey": p.serverKey})
	if err := os.WriteFile(cfgFile, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	e.opts = []string{"--config-file", cfgFile, "-H", "tcp://127.0.0.1"}
	e.start(t, "config.log")
	if out, code := remoteDocker(t, e, tlsArgs(p.clientCert, p.clientKey)...); code != 0 || strings.TrimSpace(out) != "1.41" {
		t.Fatalf("docker --tlsverify against the daemon.json's TLS: exit %d:\n%s\nlayerlabd log:\n%s", code, out, e.d.logText())
	}
	if out, code := remoteDocker(t, e, tlsArgs("", "")...); code == 0 {
		t.Fatalf("the daemon.json's --tlsverify let a client without certificate in:\n%s", out)
	}
	conflict := startDaemon(t, e.bin, filepath.Join(e.tmp, "conflict.log"), "--config-file", cfgFile, "--tlsverify", "-H", "unix://"+filepath.Join(e.tmp, "c.sock"),
		"--data-root", filepath.Join(e.tmp, "conflict"), "--exec-root", filepath.Join(e.tmp, "exec-conflict"))
	<-conflict.exited
	if msg := conflict.logText(); conflict.err == nil || !strings.Contains(msg, "the following directives are specified both as a flag and in the configuration file: tlsverify") {
		t.Fatalf("--tlsverify both in daemon.json and as a flag: %v, want dockerd's refusal:\n%s", conflict.err, msg)
	}
	e.d.terminate(t)
}

// startMetricsDaemon starts layerlabd with --metrics-addr 127.0.0.1:9323
// in its network namespace, lo up, and loads busybox. What a failed test
// leaves in container cgroups is removed after the daemon stops.
func startMetricsDaemon(t testing.TB) (testEnv, cli) {
	t.Helper()
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	withLoopback(t, &e)
	e.opts = []string{"--metrics-addr", "127.0.0.1:9323"}
	e.start(t, "layerlabd.log")
	c := e.busyboxCLI(t)
	return e, c
}

// netnsClient is an HTTP client whose connections are made in the
// network namespace of process pid (the test daemon's, where its tcp
// listeners and the test's prometheus are).
func netnsClient(pid int) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// Never unlocked: the thread, moved to the other namespace,
			// ends with this goroutine instead of serving others.
			runtime.LockOSThread()
			ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err == nil {
				err = unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
				ns.Close()
			}
			if err != nil {
				ch <- result{nil, fmt.Errorf("entering the network namespace of %d: %w", pid, err)}
				return
			}
			// The socket belongs to the namespace it was made in, from
			// whichever thread it is used later.
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial}, Timeout: 10 * time.Second}
}

// get returns the body of a GET, failing the test unless it answers 200.
func get(t testing.TB, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return string(body)
}

// startPrometheus starts Debian's prometheus in the network namespace of
// pid, scraping target every second, with its storage in a temporary
// directory, and stops it by PID when the test ends. It returns the base
// URL of its API.
func startPrometheus(t *testing.T, pid int, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		feature.Skip(t, feature.Prometheus, "Debian's prometheus package (make setup installs it): %v", err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: layerlabd\n    static_configs:\n      - targets: ['%s']\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const listen = "127.0.0.1:9090" // in the daemon's namespace, which is the test's own
	startService(t, pid, filepath.Join(dir, "prometheus.log"), dir, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"), "--web.listen-address="+listen, "--web.console.templates="+dir, "--web.console.libraries="+dir)
	return "http://" + listen
}

// TestEndToEndPrometheus runs layerlabd with --metrics-addr and a
// container, checks the scrape itself (driver latencies, bytes applied,
// the container's cgroup figures, Go and process collectors), then has
// Debian's prometheus scrape it and asks prometheus' query API for the
// per-driver prepare latency series.
func TestEndToEndPrometheus(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		feature.Skip(t, feature.Prometheus, "Debian's prometheus package (make setup installs it): %v", err)
	}
	e, c := startMetricsDaemon(t)
	id := strings.TrimSpace(c.expect(0, "", "run", "-d", "--name", "top", "busybox", "sleep", "300"))
	pid := e.d.cmd.Process.Pid
	client := netnsClient(pid)

	scrape := get(t, client, "http://127.0.0.1:9323/metrics")
	series := func(name string, labels ...string) (float64, bool) {
		for _, line := range strings.Split(scrape, "\n") {
			if !strings.HasPrefix(line, name+"{") || slices.ContainsFunc(labels, func(l string) bool { return !strings.Contains(line, l) }) {
				continue
			}
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				return v, true
			}
		}
		return 0, false
	}
	ctr := []string{`id="` + id + `"`, `name="top"`}
	for _, check := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"layerlab_driver_operation_duration_seconds_count", []string{`driver="overlay2"`, `op="prepare"`}, 2}, // the layer's and the rootfs'
		{"layerlab_driver_operation_duration_seconds_count", []string{`driver="overlay2"`, `op="commit"`}, 1},
		{"layerlab_driver_operation_duration_seconds_count", []string{`driver="overlay2"`, `op="mount"`}, 1},
		{"layerlab_driver_applied_bytes_total", []string{`driver="overlay2"`}, 100_000}, // busybox is ~1 MB
		{"layerlab_container_memory_usage_bytes", ctr, 1},
		{"layerlab_container_cpu_seconds_total", ctr, 1e-9},
		{"layerlab_container_pids", ctr, 1},
		{"layerlab_container_blkio_bytes_total", append(ctr, `op="read"`), 0},
	} {
		if v, ok := series(check.name, check.labels...); !ok || v < check.min {
			t.Errorf("scrape: %s{%s} = %v (found %v), want at least %v", check.name, strings.Join(check.labels, ","), v, ok, check.min)
		}
	}
	for _, want := range []string{"go_goroutines ", "process_resident_memory_bytes "} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if t.Failed() {
		t.Fatalf("scrape:\n%s", scrape)
	}

	api := startPrometheus(t, pid, "127.0.0.1:9323")
	query := api + `/api/v1/query?query=` + `layerlab_driver_operation_duration_seconds_count%7Bop%3D%22prepare%22%7D`
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("prometheus' last answer: %s", last)
		}
	})
	eventually(t, 60*time.Second, "prometheus returns the overlay2 prepare series", func() bool {
		resp, err := client.Get(query)
		if err != nil {
			last = err.Error()
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		last = string(body)
		var r struct {
			Status string
			Data   struct {
				Result []struct {
					Metric map[string]string
					Value  [2]any
				}
			}
		}
		if json.Unmarshal(body, &r) != nil || r.Status != "success" {
			return false
		}
		for _, s := range r.Data.Result {
			if s.Metric["driver"] == "overlay2" && s.Metric["job"] == "layerlabd" && s.Value[1] != "0" {
				t.Logf("prometheus: %s", body)
				return true
			}
		}
		return false
	})
	c.expect(0, "top", "rm", "-f", "top")
}
