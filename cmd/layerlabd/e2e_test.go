package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// dockerCLI is the docker CLI the end-to-end test drives layerlabd with;
// LAYERLAB_DOCKER_CLI moves it (the qemu guest has it in its share).
var dockerCLI = envOr("LAYERLAB_DOCKER_CLI", "/usr/local/bin/docker")

// envOr is the environment variable name's value, or def when unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// daemonProc is a layerlabd the test started, in its own mount namespace.
type daemonProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	log    string
}

// startDaemon starts layerlabd in a mount and a network namespace of its
// own (`unshare --mount --net`), so whatever it mounts stays in a
// namespace that dies with it and its host-network containers see only
// that namespace's lo; it stops the daemon by PID when the test ends, also
// on failure. The mounts are slaves of the test's: a mount that zfs-fuse
// (a host process) makes below a shared directory reaches the daemon, and
// nothing the daemon mounts comes back.
func startDaemon(t testing.TB, bin, logPath string, args ...string) *daemonProc {
	t.Helper()
	return startDaemonCmd(t, logPath, exec.Command("unshare", append([]string{"--mount", "--propagation", "slave", "--net", bin}, args...)...))
}

// startDaemonCmd is startDaemon with the command that runs layerlabd
// given: it must exec layerlabd in the process it starts.
func startDaemonCmd(t testing.TB, logPath string, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		// SIGTERM first: the daemon stops its containers and unmounts
		// them; SIGKILL only if it does not exit.
		select {
		case <-d.exited:
			return
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-d.exited
		}
	})
	return d
}

// terminate sends SIGTERM and fails the test unless the daemon exits
// cleanly within a minute.
func (d *daemonProc) terminate(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
	case <-time.After(time.Minute):
		t.Fatalf("layerlabd did not exit within a minute of SIGTERM:\n%s", d.logText())
	}
	if d.err != nil {
		t.Fatalf("layerlabd exited with %v after SIGTERM:\n%s", d.err, d.logText())
	}
}

func (d *daemonProc) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// waitSocket waits until the daemon answers on sock, or fails the test
// when it exits first or takes longer than a minute.
func (d *daemonProc) waitSocket(t testing.TB, sock string) {
	t.Helper()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("layerlabd exited before serving (%v):\n%s", d.err, d.logText())
		case <-deadline:
			t.Fatalf("layerlabd did not serve %s within a minute:\n%s", sock, d.logText())
		case <-tick.C:
		}
	}
}

// testEnv is a layerlabd an end-to-end test started, with overlay2 as the
// default driver and vfs enabled, on a loop ext4, and the busybox archive.
type testEnv struct {
	archive, bin, dataRoot, tmp, sock string
	// drivers is --storage-drivers; opts are more daemon flags.
	drivers string
	opts    []string
	d       *daemonProc
}

// startTestDaemon skips unless the test runs as root with the docker CLI,
// then builds and starts layerlabd.
// busyboxCLI is the docker CLI on the started daemon, with the busybox
// image loaded.
func (e testEnv) busyboxCLI(t testing.TB) cli {
	t.Helper()
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	return c
}

func startTestDaemon(t testing.TB) testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.start(t, "layerlabd.log")
	return e
}

// newTestEnv is startTestDaemon without the start, for a test that adds
// drivers or flags first.
func newTestEnv(t testing.TB) testEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "layerlabd mounts snapshots and starts containers")
	}
	if _, err := os.Stat(dockerCLI); err != nil {
		feature.Skip(t, feature.Docker, "%s: %v", dockerCLI, err)
	}
	e := testEnv{archive: imagetest.ArchiveForTest(t, t.TempDir()), bin: buildDaemon(t), tmp: t.TempDir(), drivers: "vfs,overlay2"}
	fs := loopfs.ForTest(t, "ext4", 1<<30) // overlay2 needs a real upper filesystem
	e.dataRoot = filepath.Join(fs.Dir, "data")
	e.sock = filepath.Join(e.tmp, "l.sock")
	return e
}

// start starts the daemon (again), logging to the file logName.
func (e *testEnv) start(t testing.TB, logName string) {
	t.Helper()
	e.d = startDaemon(t, e.bin, filepath.Join(e.tmp, logName), e.args()...)
	e.d.waitSocket(t, e.sock)
}

// args are the daemon's flags.
func (e *testEnv) args() []string {
	return append([]string{"-H", "unix://" + e.sock, "--data-root", e.dataRoot, "--exec-root", filepath.Join(e.tmp, "exec"),
		"--storage-driver", "overlay2", "--storage-drivers", e.drivers, "-D"}, e.opts...)
}

// buildDaemon builds layerlabd for the test, or takes the one
// LAYERLAB_LAYERLABD names (the qemu guest has no Go toolchain: its
// layerlabd is built statically on the host).
func buildDaemon(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("LAYERLAB_LAYERLABD"); bin != "" {
		return bin
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	bin := filepath.Join(t.TempDir(), "layerlabd")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEndDockerCLI drives layerlabd with the real docker CLI: version,
// info, load, images, inspect, tag, history, save + rmi + load round trip,
// the errors of an unknown image and a hostile archive, raw API errors,
// the refusal of a second daemon on the same data root, and a SIGTERM
// that leaves no socket and no mount.
func TestEndToEndDockerCLI(t *testing.T) {
	e := startTestDaemon(t)
	archive, bin, dataRoot, tmp, sock, d := e.archive, e.bin, e.dataRoot, e.tmp, e.sock, e.d
	if fi, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want 0660", fi.Mode().Perm())
	}

	docker := func(args ...string) (string, error) {
		cmd := exec.Command(dockerCLI, append([]string{"-H", "unix://" + sock}, args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
		cmd.Dir = tmp
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(want string, args ...string) string {
		t.Helper()
		out, err := docker(args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s\nlayerlabd log:\n%s", strings.Join(args, " "), err, out, d.logText())
		}
		if !strings.Contains(out, want) {
			t.Fatalf("docker %s: output lacks %q:\n%s", strings.Join(args, " "), want, out)
		}
		t.Logf("docker %s:\n%s", strings.Join(args, " "), out)
		return out
	}
	mustFail := func(want string, args ...string) {
		t.Helper()
		out, err := docker(args...)
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("docker %s: %v, want a failure saying %q:\n%s", strings.Join(args, " "), err, want, out)
		}
		t.Logf("docker %s: %v:\n%s", strings.Join(args, " "), err, out)
	}

	must("1.41", "version", "--format", "{{.Server.APIVersion}}")
	info := must("Storage Driver: overlay2", "info")
	for _, want := range []string{"Strategy: copy-on-write", "Backing Filesystem: extfs", "Enabled Drivers: vfs,overlay2", "Images: 0"} {
		if !strings.Contains(info, want) {
			t.Errorf("docker info lacks %q:\n%s", want, info)
		}
	}
	load := must("Loaded image: busybox:latest", "load", "-i", archive)
	if !strings.Contains(load, "Loaded image: busybox:two") {
		t.Errorf("docker load: %s", load)
	}
	images := must("busybox", "images")
	if !strings.Contains(images, "latest") || !strings.Contains(images, "two") {
		t.Errorf("docker images:\n%s", images)
	}
	imgs := imagetest.ForTest(t)
	wantID, _ := imgs.Latest.ConfigName()
	inspect := func(name string) (id string, layers int) {
		t.Helper()
		var out []struct {
			ID     string `json:"Id"`
			RootFS struct{ Layers []string }
		}
		if err := json.Unmarshal([]byte(must("", "image", "inspect", name)), &out); err != nil || len(out) != 1 {
			t.Fatalf("docker image inspect %s: %v %+v", name, err, out)
		}
		return out[0].ID, len(out[0].RootFS.Layers)
	}
	if id, n := inspect("busybox"); id != wantID.String() || n != 1 {
		t.Fatalf("inspect busybox: Id %s with %d layers, want %s with 1", id, n, wantID)
	}
	must("", "tag", "busybox", "busybox:copy")
	if id, _ := inspect("busybox:copy"); id != wantID.String() {
		t.Fatalf("busybox:copy is %s, want %s", id, wantID)
	}
	must("ADD busybox", "history", "busybox")

	must("", "save", "busybox", "-o", "out.tar")
	rmi := must("Untagged: busybox:latest", "rmi", "busybox", "busybox:copy")
	if !strings.Contains(rmi, "Deleted: "+wantID.String()) {
		t.Fatalf("docker rmi: %s", rmi)
	}
	mustFail("No such image", "image", "inspect", "busybox")
	must("Loaded image: busybox:latest", "load", "-i", filepath.Join(tmp, "out.tar"))
	if id, _ := inspect("busybox"); id != wantID.String() {
		t.Fatalf("after the round trip busybox is %s, want %s", id, wantID)
	}
	mustFail("No such image", "rmi", "nosuch")

	// The saved archive again, gzip-compressed and as a pure OCI layout
	// (manifest.json dropped): both load to the same image.
	saved, err := os.ReadFile(filepath.Join(tmp, "out.tar"))
	if err != nil {
		t.Fatal(err)
	}
	oci, err := imagetest.Without(saved, "manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"out.tar.gz": imagetest.Gzip(saved), "oci.tar": oci} {
		if err := os.WriteFile(filepath.Join(tmp, file), data, 0o644); err != nil {
			t.Fatal(err)
		}
		must("", "rmi", "busybox")
		must("Loaded image: busybox:latest", "load", "-i", filepath.Join(tmp, file))
		if id, _ := inspect("busybox"); id != wantID.String() {
			t.Fatalf("%s loaded busybox as %s, want %s", file, id, wantID)
		}
	}

	evil := hostileArchive(t, tmp)
	mustFail("leaves the archive", "load", "-i", evil)
	if n := strings.Count(must("", "images", "-q"), "\n"); n != 2 {
		t.Fatalf("%d images after the hostile load, want 2", n)
	}

	checkRawAPI(t, sock, evil)

	// A second daemon on the same data root is refused, naming the holder.
	second := startDaemon(t, bin, filepath.Join(tmp, "second.log"), "-H", "unix://"+filepath.Join(tmp, "second.sock"),
		"--data-root", dataRoot, "--exec-root", filepath.Join(tmp, "exec2"), "--storage-driver", "vfs")
	<-second.exited
	if msg := second.logText(); second.err == nil || !strings.Contains(msg, dataRoot) || !strings.Contains(msg, fmt.Sprintf("pid %d", d.cmd.Process.Pid)) {
		t.Fatalf("second daemon: %v, want a refusal naming %s and pid %d:\n%s", second.err, dataRoot, d.cmd.Process.Pid, msg)
	}

	d.terminate(t)
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s left behind: %v", sock, err)
	}
	out, err := command.Run(context.Background(), "findmnt", "-rn", "-o", "TARGET")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range strings.Fields(string(out)) {
		if strings.HasPrefix(m, dataRoot) {
			t.Errorf("mount %s left behind", m)
		}
	}
}

// hostileArchive writes a docker-archive whose manifest.json points out of
// the archive.
func hostileArchive(t *testing.T, dir string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte(`[{"Config":"../../../etc/passwd","RepoTags":["evil:latest"],"Layers":["../../../etc/shadow"]}]`)
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "evil.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// apiError is a raw request and the error it must get.
type apiError struct {
	method, path string
	body         []byte
	status       int
	want         string
}

// checkAPIErrors sends each request and wants dockerd's answer: the
// status, a JSON {"message"} that says want, and dockerd's headers.
func checkAPIErrors(t *testing.T, client *http.Client, cases []apiError) {
	t.Helper()
	for _, c := range cases {
		req, err := http.NewRequest(c.method, "http://layerlabd"+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Message string }
		decodeErr := json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != c.status || decodeErr != nil || !strings.Contains(e.Message, c.want) ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Api-Version") != "1.41" {
			t.Errorf("%s %s: %d %q (%v), headers %v; want %d with a JSON message saying %q", c.method, c.path, resp.StatusCode, e.Message, decodeErr, resp.Header, c.status, c.want)
		}
	}
}

// checkRawAPI sends what the CLI does not: malformed JSON, an unknown
// route, a version out of range, a hostile load; each must answer with
// dockerd's JSON error shape and status.
func checkRawAPI(t *testing.T, sock, evil string) {
	t.Helper()
	client := apiClient(sock)
	evilBody, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	checkAPIErrors(t, client, []apiError{
		{"GET", "/v1.41/images/json?filters=%7Bnot-json", nil, 400, "invalid"},
		{"GET", "/v1.41/no/such/route", nil, 404, "page not found"},
		{"GET", "/v1.99/version", nil, 400, "too new"},
		{"GET", "/images/nosuch/json", nil, 404, "No such image"},
		{"POST", "/v1.41/images/load", evilBody, 400, "leaves the archive"},
		{"POST", "/v1.30/images/busybox/tag", nil, 400, "repo is required"},
	})
	resp, err := client.Head("http://layerlabd/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Api-Version") != "1.41" || resp.Header.Get("Ostype") != "linux" {
		t.Errorf("HEAD /_ping: %d %v", resp.StatusCode, resp.Header)
	}
	resp, err = client.Get("http://layerlabd/v1.24/_ping")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "OK" {
		t.Errorf("GET /v1.24/_ping: %d %q", resp.StatusCode, body)
	}
}

// startService starts a helper daemon a test needs in the network
// namespace of process pid (nsenter execs it, so the pid is the daemon's),
// its output in logPath, and stops it by PID when the test ends (SIGTERM,
// SIGKILL after 10 s), logging its output if the test failed. The channel
// closes when it exits.
func startService(t testing.TB, pid int, logPath, dir string, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := inNetns(pid, bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, dir
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s said:\n%s", filepath.Base(bin), b)
		}
	})
	return exited
}
