package executor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/runtime/executor"
)

// TestMain is also the containers' init: libcontainer re-executes this
// test binary as "<binary> init", and Init never returns then.
func TestMain(m *testing.M) {
	executor.Init()
	os.Exit(m.Run())
}

// testCgroupParent keeps the tests' cgroups apart from a daemon's.
const testCgroupParent = "/layerlab-test"

// env is what a test needs to run containers: an executor with its own
// state root and a busybox image committed in an overlay2 driver on a loop
// ext4, from which each container gets its own active snapshot.
type env struct {
	ex    executor.Executor
	root  string // the executor's state root
	drv   *core.Driver
	mnts  string // where container root filesystems are mounted
	image string // the committed busybox snapshot
}

func newEnv(t testing.TB) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "containers need root (namespaces, cgroups, mounts)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		feature.Skip(t, feature.Busybox, "/bin/busybox: %v (make setup installs busybox-static)", err)
	}
	ctx := context.Background()
	fs := loopfs.ForTest(t, "ext4", 256<<20)
	drv, err := overlay.NewOverlay2(ctx, filepath.Join(fs.Dir, "overlay2"), nil)
	if err != nil {
		feature.Skip(t, feature.Overlay2, "%v", err)
	}
	t.Cleanup(func() { _ = drv.Close() })
	removeCgroupParent(t)
	e := &env{root: t.TempDir(), drv: drv, mnts: filepath.Join(fs.Dir, "mnt"), image: "busybox"}
	e.ex = e.executor(t)
	dir := e.mountSnapshot(t, "busybox-build", "")
	writeBusybox(t, dir)
	if err := mount.UnmountAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := drv.Commit(ctx, e.image, "busybox-build"); err != nil {
		t.Fatal(err)
	}
	return e
}

// executor opens an executor on the env's root: libcontainer, or the runc
// binary when TestRuncExecutor runs this suite again.
func (e *env) executor(t testing.TB) executor.Executor {
	t.Helper()
	var ex executor.Executor
	var err error
	if os.Getenv(testExecutorEnv) == "runc" {
		ex, err = executor.NewRunc("runc", e.root, testCgroupParent)
	} else {
		ex, err = executor.NewLibcontainer(e.root, testCgroupParent)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

// mountSnapshot prepares key on parent and mounts it, unmounting it when
// the test ends.
func (e *env) mountSnapshot(t testing.TB, key, parent string) string {
	t.Helper()
	mounts, err := e.drv.Prepare(context.Background(), key, parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(e.mnts, key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(mounts, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mount.UnmountAll(dir); err != nil {
			t.Errorf("unmount rootfs: %v", err)
		}
	})
	return dir
}

// writeBusybox lays out a minimal busybox root filesystem in dir.
func writeBusybox(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// The busybox commands the tests run.
	for _, a := range []string{"sh", "true", "false", "echo", "cat", "sleep", "id", "hostname", "kill", "tail", "grep", "tr", "wc", "stty"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newID returns a container id no other test run uses.
func newID(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b)
}

// safeBuffer is a bytes.Buffer that the container's copy goroutine and
// the test may use at once.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ctr is one container of a test, with its captured output.
type ctr struct {
	executor.Container
	stdout, stderr *safeBuffer
}

// create makes a container running args on its own snapshot of the image;
// the test's cleanup deletes it (before the snapshot is unmounted:
// cleanups run last-in first-out).
func (e *env) create(t testing.TB, args []string, o executor.SpecOpts, stdin io.Reader, edits ...func(*specs.Spec)) *ctr {
	t.Helper()
	id := newID(t)
	rootfs := e.mountSnapshot(t, id, e.image)
	spec, err := executor.DefaultSpec(args, rootfs, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range edits {
		edit(spec)
	}
	c := &ctr{stdout: &safeBuffer{}, stderr: &safeBuffer{}}
	stdio := executor.Stdio{Stdout: c.stdout, Stderr: c.stderr}
	stdio.Stdin = stdin
	if c.Container, err = e.ex.Create(context.Background(), id, spec, stdio); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	})
	return c
}

// testContext bounds what a test waits for.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start creates and starts a container.
func (e *env) start(t testing.TB, args []string) *ctr {
	t.Helper()
	c := e.create(t, args, executor.SpecOpts{}, nil)
	if err := c.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	return c
}

// sleeper starts `sleep 100` and returns it with its pids and cgroups once
// it runs.
func (e *env) sleeper(t *testing.T) (c *ctr, pids []int, cgroups []string) {
	t.Helper()
	c = e.start(t, []string{"sleep", "100"})
	return c, waitPids(t, c, 1), cgroupDirs(t, c.ID())
}

// assertGone checks that a deleted container left no state directory, no
// cgroup (cgroups as cgroupDirs listed them) and none of its processes.
func (e *env) assertGone(t *testing.T, c *ctr, cgroups []string, pids []int) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(e.root, c.ID())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left behind (%v)", err)
	}
	for _, dir := range cgroups {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup %s left behind (%v)", dir, err)
		}
	}
	for _, pid := range pids {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(pid))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("process %d left behind (%v)", pid, err)
		}
	}
}

// run creates and starts a container and waits for it to exit.
func (e *env) run(t testing.TB, args []string, o executor.SpecOpts, stdin io.Reader, edits ...func(*specs.Spec)) (*ctr, executor.Exit) {
	t.Helper()
	c := e.create(t, args, o, stdin, edits...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return c, exit
}

// cgroupMounts returns the mount points of the cgroup hierarchies: every
// v1 controller's and, on this hybrid host, the v2 mount libcontainer
// also puts each container in. It reads mountinfo three times and takes
// the union: a read that races with mounts made elsewhere on the host (other
// test runs) can skip entries, a kernel quirk of /proc/*/mountinfo.
func cgroupMounts(t testing.TB) []string {
	t.Helper()
	set := map[string]bool{}
	for range 3 {
		for _, m := range mountInfo(t) {
			if m.fstype == "cgroup" || m.fstype == "cgroup2" {
				set[m.point] = true
			}
		}
	}
	if len(set) == 0 {
		t.Fatal("no cgroup hierarchy mounted")
	}
	return slices.Sorted(maps.Keys(set))
}

type mountEntry struct{ point, fstype string }

// mountInfo parses /proc/self/mountinfo: "... mountpoint ... - fstype ...".
func mountInfo(t testing.TB) []mountEntry {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []mountEntry
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		fields := strings.Fields(line)
		if i := slices.Index(fields, "-"); i > 4 && i+1 < len(fields) {
			out = append(out, mountEntry{point: fields[4], fstype: fields[i+1]})
		}
	}
	return out
}

// removeCgroupParent removes the tests' parent cgroup when the test ends
// (containers remove their own), so the cgroup trees are as before.
// Registered before any container, it runs after their deletes.
func removeCgroupParent(t testing.TB) {
	t.Helper()
	mounts := cgroupMounts(t)
	t.Cleanup(func() {
		for _, m := range mounts {
			if err := os.Remove(filepath.Join(m, testCgroupParent)); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("remove the tests' cgroup parent: %v", err)
			}
		}
	})
}

// mountsOf returns the mount points whose path names the container id or
// lies under dir (its state root): a mount the executor leaked on the host.
// Mounts made elsewhere on the host meanwhile do not count.
func mountsOf(t testing.TB, id, dir string) []string {
	t.Helper()
	var out []string
	for _, m := range mountInfo(t) {
		if strings.Contains(m.point, id) || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m.point)
		}
	}
	return out
}

// waitPids waits (bounded) until the container has at least n processes
// and returns them.
func waitPids(t *testing.T, c *ctr, n int) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		pids, err := c.Pids(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) >= n {
			return pids
		}
		select {
		case <-ctx.Done():
			t.Fatalf("container has %d processes, want %d", len(pids), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// mountNamespace names the mount namespace of this process's main thread.
func mountNamespace(t *testing.T) string {
	t.Helper()
	ns, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// cgroupDirs returns the container's cgroup in every v1 hierarchy.
func cgroupDirs(t *testing.T, id string) []string {
	var dirs []string
	for _, m := range cgroupMounts(t) {
		dirs = append(dirs, filepath.Join(m, testCgroupParent, id))
	}
	return dirs
}

// readConsole reads a terminal's master until the last slave end closes
// (the read fails with EIO) and then sends what it read, with the
// terminal's \r\n line ends as \n.
func readConsole(console *os.File) <-chan string {
	out := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := console.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				out <- strings.ReplaceAll(b.String(), "\r\n", "\n")
				return
			}
		}
	}()
	return out
}

// awaitConsole returns what readConsole read, bounded in time.
func awaitConsole(t *testing.T, output <-chan string) string {
	t.Helper()
	select {
	case s := <-output:
		return s
	case <-testContext(t).Done():
		t.Fatal("the terminal never closed")
		return ""
	}
}
