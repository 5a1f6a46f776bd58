// Package drivertest is layerlab's conformance suite. Conformance runs, on
// loop-backed filesystems it makes and tears down, containerd's snapshotter
// test suite (through the containerd adapter) and layerlab's own checks for
// what containerd's does not cover: that Capabilities tells the truth on the
// backing store, that Usage matches what was written, concurrency, reopening
// after a close mid-way, 128-layer chains and error sentinels.
package drivertest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/containerd"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// containerd's suite mounts long overlay options the way drivers/mount
// does: on a locked thread that unshares its fs context and chdirs to the
// lowerdirs' parent, and that ends with its goroutine. When that thread is
// the main thread, Go never ends it (it parks it), so its cwd keeps the
// filesystem under test busy for good and the fixture cannot unmount it.
// Holding the main thread for the main goroutine keeps every other
// goroutine off it. drivertest is imported only by test binaries.
func init() { runtime.LockOSThread() }

// Config says what to run.
type Config struct {
	Factory drivers.Factory
	// FSTypes are the loop filesystems to run on (ext4, xfs, btrfs).
	FSTypes []string
	// ContainerdName is the name containerd's suite knows the driver by; it
	// adapts some checks to it ("overlayfs": no directory renames across
	// layers, which overlay refuses without redirect_dir).
	ContainerdName string
	// Size of each loop filesystem; loopfs.MinSize if zero.
	Size int64
	// Fixtures are backing stores other than loop filesystems (a zfs
	// pool): each returns a directory to keep homes in, torn down by the
	// fixture through t.Cleanup, or skips the test saying why.
	Fixtures []Fixture
}

// Fixture makes a backing store for the suites.
type Fixture struct {
	Name string
	Dir  func(t *testing.T) string
	// Quota names the feature (drivers/feature) that gives drivers quota
	// on this store, such as feature.XFSQuota for xfs mounted with
	// prjquota: a driver that declares no quota support there skips the
	// quota check as missing that feature, which LAYERLAB_REQUIRE turns
	// into a failure. Empty: declaring none is the driver's choice.
	Quota string
}

// Conformance runs both suites on each filesystem type.
func Conformance(t *testing.T, c Config) {
	if home := os.Getenv(envCrashHome); home != "" {
		crashChild(t, c.Factory, home) // a child of checkCrash, not a test run
		return
	}
	fixtures := c.Fixtures
	for _, fstype := range c.FSTypes {
		fstype := fstype
		fixtures = append(fixtures, Fixture{Name: fstype, Dir: func(t *testing.T) string {
			return loopfs.ForTest(t, fstype, c.Size).Dir
		}})
	}
	crashed := false
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			dir := f.Dir(t)
			if p := c.Factory.Probe(dir); !p.Available() {
				feature.Skip(t, c.Factory.Name, "%s on %s: %s", c.Factory.Name, f.Name, p.Reason)
			}
			t.Run("containerd", func(t *testing.T) { Containerd(t, c.Factory, c.ContainerdName, dir) })
			t.Run("layerlab", func(t *testing.T) { suite(t, c.Factory, dir, f.Quota) })
			// Killing a child at every step costs a process per step: one
			// backing store per driver is enough.
			if !crashed {
				crashed = true
				t.Run("Crash", func(t *testing.T) { checkCrash(t, c.Factory, dir) })
			}
		})
	}
}

// containerdDepth is the chain containerd's 128LayersMount test builds.
const containerdDepth = 128

// skip128 is the -test.skip pattern Main adds: containerd's
// 128LayersMount under any test and fixture that Conformance runs.
const skip128 = ".*/.*/^containerd$/^128LayersMount$"

// Main is TestMain for the package of a driver that may declare a
// MaxDepth under 128 (aufs, whose branch limit is 127 on most kernels):
// it runs the package's tests, but where one of factories declares such a
// depth, without containerd's 128LayersMount, which such a driver fails by
// design; checkChain128 asserts the refusal instead. The test is left out
// through -test.skip (joined to any pattern given on the command line),
// the only way to leave out one subtest of a suite that is not ours.
//
//	func TestMain(m *testing.M) { os.Exit(drivertest.Main(m, Factory())) }
func Main(m *testing.M, factories ...drivers.Factory) int {
	flag.Parse()
	for _, f := range factories {
		if shallow(f) {
			pattern := skip128
			if given := flag.Lookup("test.skip").Value.String(); given != "" {
				pattern = given + "|" + skip128
			}
			if err := flag.Set("test.skip", pattern); err != nil {
				fmt.Fprintf(os.Stderr, "drivertest: set -test.skip: %v\n", err)
				return 2
			}
			break
		}
	}
	return m.Run()
}

// shallow reports whether f declares a maximum depth under containerd's
// 128 layers.
func shallow(f drivers.Factory) bool {
	return f.Capabilities.MaxDepth > 0 && f.Capabilities.MaxDepth < containerdDepth
}

// Containerd runs containerd's snapshotter suite with each driver home in
// a new directory under dir (containerd's own root argument, in /tmp, is
// left unused so the home sits on the filesystem under test).
func Containerd(t *testing.T, f drivers.Factory, name, dir string) {
	if name == "" {
		name = f.Name
	}
	if shallow(f) {
		if s := flag.Lookup("test.skip"); s == nil || !strings.Contains(s.Value.String(), skip128) {
			t.Fatalf("%s declares a maximum depth of %d layers, so it must refuse containerd's 128LayersMount; run the package's tests through drivertest.Main (TestMain), which leaves that test out", f.Name, f.Capabilities.MaxDepth)
		}
		t.Logf("containerd's 128LayersMount is left out: %s unites at most %d layers; layerlab's Chain128 check asserts that it refuses more", f.Name, f.Capabilities.MaxDepth)
	}
	testsuite.SnapshotterSuite(t, name, func(ctx context.Context, _ string) (snapshots.Snapshotter, func() error, error) {
		home, err := os.MkdirTemp(dir, "containerd-")
		if err != nil {
			return nil, nil, err
		}
		d, err := f.Open(ctx, home, nil)
		if err != nil {
			os.RemoveAll(home)
			return nil, nil, err
		}
		cleanup := func() error {
			d.Close()
			return os.RemoveAll(home)
		}
		return containerd.New(d), cleanup, nil
	})
}

// Suite runs layerlab's own checks with driver homes under dir.
func Suite(t *testing.T, f drivers.Factory, dir string) { suite(t, f, dir, "") }

// suite is Suite on a fixture whose quota comes from the feature quota
// (see Fixture.Quota).
func suite(t *testing.T, f drivers.Factory, dir, quota string) {
	checks := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"Capabilities", checkCapabilities},
		{"Usage", checkUsage},
		{"Concurrent", checkConcurrent},
		{"ReopenAfterCloseMidway", checkReopen},
		{"Chain128", checkChain128},
		{"Errors", checkErrors},
		{"BadOpen", checkBadOpen},
		{"Quota", checkQuota},
		{"RemoveMounted", checkRemoveMounted},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, f, dir)
			e.quota = quota
			c.fn(t, e)
		})
	}
}

// env is one check's driver, home and scratch space.
type env struct {
	t       *testing.T
	ctx     context.Context
	factory drivers.Factory
	home    string
	work    string // mount points, outside home
	d       drivers.Driver
	quota   string // the feature that gives quota on the fixture, if any
}

func newEnv(t *testing.T, f drivers.Factory, dir string) *env {
	home, err := os.MkdirTemp(dir, "drivertest-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: context.Background(), factory: f, home: home, work: t.TempDir()}
	e.open()
	t.Cleanup(func() {
		if ms, err := mount.Under(e.work); err == nil {
			for _, m := range ms {
				mount.UnmountAll(m)
			}
		}
		e.d.Close()
		os.RemoveAll(home)
	})
	return e
}

func (e *env) open() {
	e.t.Helper()
	d, err := e.factory.Open(e.ctx, e.home, nil)
	if err != nil {
		e.t.Fatalf("open %s: %v", e.factory.Name, err)
	}
	e.d = d
}

// mount mounts ms on a new directory and unmounts it when the check ends.
func (e *env) mount(name string, ms []drivers.Mount) string {
	e.t.Helper()
	target := filepath.Join(e.work, name)
	if err := os.MkdirAll(target, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		e.t.Fatalf("mount %s: %v", name, err)
	}
	e.t.Cleanup(func() { mount.UnmountAll(target) })
	return target
}

func (e *env) unmount(target string) {
	e.t.Helper()
	if err := mount.UnmountAll(target); err != nil {
		e.t.Fatal(err)
	}
}

// layer prepares key on parent, lets write fill it, and commits it as name.
func (e *env) layer(name, parent string, write func(dir string)) {
	e.t.Helper()
	key := name + "-active"
	ms, err := e.d.Prepare(e.ctx, key, parent)
	if err != nil {
		e.t.Fatalf("prepare %s: %v", key, err)
	}
	dir := e.mount(key, ms)
	write(dir)
	e.unmount(dir)
	if err := e.d.Commit(e.ctx, name, key); err != nil {
		e.t.Fatalf("commit %s: %v", name, err)
	}
}

func (e *env) writeFile(path string, data []byte) {
	e.t.Helper()
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		e.t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		e.t.Fatal(err)
	}
}

func mountAll(ms []drivers.Mount, target string) error { return mount.All(ms, target) }

func unmountAll(target string) error { return mount.UnmountAll(target) }
