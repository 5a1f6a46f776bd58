package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// Images in the archive ctrd imports: busybox, and a sandbox ("pause")
// image for the CRI plugin whose command sleeps.
const (
	busyboxRef = "docker.io/library/busybox:latest"
	pauseRef   = "docker.io/layerlab/pause:1"
)

// serveProc is `layerlab snapshotter serve` run as its own process (the
// test binary re-executed as the command, see TestMain).
type serveProc struct {
	name, root, addr, log string
	opts                  []string
	quiet                 bool // without -D (benchmarks: no log write per call)
	cmd                   *exec.Cmd
	exited                chan error
}

func (s *serveProc) start(t testing.TB) {
	t.Helper()
	args := []string{"snapshotter", "serve", "--driver", s.name, "--root", s.root, "--address", s.addr}
	if !s.quiet {
		args = append(args, "-D")
	}
	for _, o := range s.opts {
		args = append(args, "--opt", o)
	}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.cmd = exec.Command(os.Args[0], args...)
	s.cmd.Env = append(os.Environ(), "LAYERLAB_TEST_CLI=1")
	s.cmd.Stdout, s.cmd.Stderr = f, f
	// Killed with the test if that dies first (a -timeout panic).
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait() }()
	waitUntil(t, 20*time.Second, "serve "+s.name+" listening", func() bool {
		b, _ := os.ReadFile(s.log)
		return strings.Count(string(b), "serving driver") > strings.Count(string(b), "stopped; closing")
	})
}

// stop sends SIGTERM and waits (bounded) for the process to exit; it
// returns its exit error.
func (s *serveProc) stop(t testing.TB) error {
	if s.cmd == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		s.cmd = nil
		return err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.cmd = nil
		return fmt.Errorf("serve %s did not stop on SIGTERM in 20s", s.name)
	}
}

func (s *serveProc) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// client is containerd's proxy client on the serve socket: a second
// client beside containerd, to read the driver's store.
func (s *serveProc) client(t testing.TB) snapshots.Snapshotter {
	return proxyClient(t, s.addr, s.name)
}

// proxyClient is containerd's proxy snapshotter client on the socket
// addr, on a connection with gRPC's defaults (containerd adds message
// size limits, a backoff and its dialer, none of which changes a call's
// cost).
func proxyClient(t testing.TB, addr, name string) snapshots.Snapshotter {
	conn, err := grpc.NewClient("unix://"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), name)
}

// ctrd is a containerd the test runs in its own mount and network
// namespaces (`unshare --mount --propagation slave --net`), with its own
// root, state, socket and config, and /run/containerd (where 1.6 puts its
// shims' sockets and ctr its FIFOs) a tmpfs of that namespace.
type ctrd struct {
	dir, sock string
	cmd       *exec.Cmd
	exited    chan error
	serves    map[string]*serveProc // by snapshotter name, layerlab-DRIVER
	cgroup    string                // the CRI pods' cgroup parent
}

func needContainerd(t testing.TB) {
	t.Helper()
	needRoot(t)
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			feature.Skip(t, feature.Containerd, "%s: %v (make setup installs Debian's containerd)", bin, err)
		}
	}
}

// archiveForContainerd writes busybox:latest and the sandbox image as one
// docker-archive.
func archiveForContainerd(t testing.TB, dir string) string {
	imgs := imagetest.ForTest(t)
	cfg, err := imgs.Latest.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	c.Cmd = []string{"sleep", "86400"}
	pause, err := mutate.Config(imgs.Latest, c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "images.tar")
	if err := imagetest.Write(path, map[string]v1.Image{"busybox:latest": imgs.Latest, "layerlab/pause:1": pause}); err != nil {
		t.Fatal(err)
	}
	return path
}

// startContainerd starts containerd with a proxy_plugins entry for every
// serve (named layerlab-DRIVER) and the CRI plugin on cri's snapshotter.
// Its garbage collector runs on every deletion (deletion_threshold = 1):
// by default a deletion waits for the next paced collection, due the mean
// collection time / pause_threshold (50x) after the last, and after a slow
// one (one that met a serve being killed) that is past any bound a test
// can wait.
func startContainerd(t testing.TB, dir string, serves []*serveProc, cri string) *ctrd {
	t.Helper()
	c := &ctrd{dir: dir, sock: filepath.Join(dir, "containerd.sock"), serves: map[string]*serveProc{},
		cgroup: fmt.Sprintf("/layerlab-cri-%d", os.Getpid())}
	var plugins strings.Builder
	for _, s := range serves {
		c.serves["layerlab-"+s.name] = s
		fmt.Fprintf(&plugins, "[proxy_plugins.\"layerlab-%s\"]\n  type = \"snapshot\"\n  address = %q\n", s.name, s.addr)
	}
	for _, d := range []string{"cni/bin", "cni/conf", "pods"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
%[4]s
[plugins."io.containerd.gc.v1.scheduler"]
  deletion_threshold = 1
[plugins."io.containerd.internal.v1.opt"]
  path = "%[5]s/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = %[7]q
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "%[5]s/cni/bin"
    conf_dir = "%[5]s/cni/conf"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, plugins.String(), dir, pauseRef, cri)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	// /run/containerd must exist to be mounted over; it is made (and
	// removed) on the host, empty.
	made := false
	if _, err := os.Stat("/run/containerd"); os.IsNotExist(err) {
		if err := os.Mkdir("/run/containerd", 0o711); err != nil {
			t.Fatal(err)
		}
		made = true
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command("unshare", "--mount", "--propagation", "slave", "--net", "sh", "-c",
		`set -e; ip link set lo up; mount -t tmpfs -o mode=0711 tmpfs /run/containerd; exec containerd --config "$1"`, "sh", cfgPath)
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.exited = make(chan error, 1)
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range append([]string{"containerd.log"}, "serve-overlay2.log", "serve-btrfs.log", "serve-zfs.log") {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				lines := strings.Split(string(b), "\n")
				t.Logf("%s, last lines:\n%s", f, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
		c.stop(t)
		if made {
			_ = os.Remove("/run/containerd")
		}
	})
	waitUntil(t, 30*time.Second, "containerd answering", func() bool {
		_, err := c.ctrTry("version")
		return err == nil
	})
	return c
}

// stop stops containerd by PID (SIGTERM, then SIGKILL after 10 s), then
// the shims of this containerd (found by its socket in their command
// line), and removes the CRI pods' cgroups.
func (c *ctrd) stop(t testing.TB) {
	if c.cmd != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("containerd did not stop on SIGTERM in 10s; killing it")
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
		c.cmd = nil
	}
	for _, pid := range pidsWith(c.sock) {
		t.Logf("killing shim %d of this test's containerd", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	waitUntil(t, 10*time.Second, "shims gone", func() bool { return len(pidsWith(c.sock)) == 0 })
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + c.cgroup)
	for _, d := range dirs {
		subs, _ := filepath.Glob(d + "/*/")
		for _, s := range subs {
			if fi, err := os.Stat(s); err == nil && fi.IsDir() {
				_ = os.Remove(s)
			}
		}
		if err := os.Remove(d); err != nil {
			t.Errorf("pod cgroup %s: %v", d, err)
		}
	}
}

// pidsWith returns the processes whose command line holds s.
func pidsWith(s string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// ctrTry runs ctr in containerd's namespaces (its FIFOs live in the
// private /run/containerd).
func (c *ctrd) ctrTry(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"-t", fmt.Sprint(c.cmd.Process.Pid), "-m", "-n", "ctr", "--address", c.sock}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	return string(out), err
}

func (c *ctrd) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, err := c.ctrTry(args...)
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// reconnected waits until containerd talks to snapshotter again after its
// serve restarted: containerd's gRPC client retries a refused connection
// with a backoff of up to 3 s (containerd 1.6's proxy_plugins dialer).
func (c *ctrd) reconnected(t testing.TB, snapshotter string) {
	t.Helper()
	waitUntil(t, 15*time.Second, snapshotter+" reconnected", func() bool {
		_, err := c.ctrTry("snapshots", "--snapshotter", snapshotter, "ls")
		return err == nil
	})
}

// keys lists the snapshots containerd records for snapshotter in
// namespace ns, by KEY, with their kind.
func (c *ctrd) keys(t testing.TB, ns, snapshotter string) map[string]string {
	t.Helper()
	out := c.ctr(t, "-n", ns, "snapshots", "--snapshotter", snapshotter, "ls")
	keys := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] != "KEY" {
			keys[f[0]] = f[len(f)-1]
		}
	}
	return keys
}

// backend returns the driver's snapshots as its store holds them: names
// containerd made, NAMESPACE/ID/KEY.
func backend(t testing.TB, sn snapshots.Snapshotter) map[string]snapshots.Info {
	t.Helper()
	all := map[string]snapshots.Info{}
	if err := sn.Walk(context.Background(), func(_ context.Context, i snapshots.Info) error {
		all[i.Name] = i
		return nil
	}); err != nil {
		t.Fatalf("walk: %v", err)
	}
	return all
}

// orphans returns the driver's snapshots that containerd does not record
// in any of namespaces: what its garbage collector should remove.
func (c *ctrd) orphans(t testing.TB, snapshotter string, namespaces ...string) []string {
	t.Helper()
	known := map[string]bool{}
	for _, ns := range namespaces {
		for k := range c.keys(t, ns, snapshotter) {
			known[ns+"/"+k] = true
		}
	}
	var out []string
	for name := range backend(t, c.serves[snapshotter].client(t)) {
		parts := strings.SplitN(name, "/", 3)
		if len(parts) != 3 || !known[parts[0]+"/"+parts[2]] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// mountsUnder returns the mount points below dir in the mount namespace of
// pid.
func mountsUnder(t testing.TB, pid int, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func waitUntil(t testing.TB, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
