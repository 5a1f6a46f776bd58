package devicemapper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// What the conformance suite does not reach: the options, the user's
// pool, removal of a mounted snapshot and a process that died without
// Close. These run in the test guest, on real dm-thin.

type fixture struct {
	t   *testing.T
	ctx context.Context
	dir string
}

func newFixture(t *testing.T) *fixture {
	return &fixture{t: t, ctx: context.Background(), dir: homeOnExt4(t)}
}

func (f *fixture) open(home string, opts drivers.Options) *Driver {
	f.t.Helper()
	d, err := New(f.ctx, filepath.Join(f.dir, home), opts)
	if err != nil {
		f.t.Fatalf("open %s %v: %v", home, opts, err)
	}
	f.t.Cleanup(func() { d.Close() })
	return d
}

// mount mounts ms on a new directory, unmounted when the test ends.
func (f *fixture) mount(ms []drivers.Mount) string {
	f.t.Helper()
	target, err := os.MkdirTemp(f.dir, "mnt-")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { mount.UnmountAll(target) })
	return target
}

// layer prepares key on parent, writes file=content and commits it as
// name.
func (f *fixture) layer(d drivers.Driver, name, parent, file, content string, opts ...drivers.Opt) {
	f.t.Helper()
	ms, err := d.Prepare(f.ctx, name+"-active", parent, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	dir := f.mount(ms)
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := mount.UnmountAll(dir); err != nil {
		f.t.Fatal(err)
	}
	if err := d.Commit(f.ctx, name, name+"-active"); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) read(ms []drivers.Mount, file string) string {
	f.t.Helper()
	dir := f.mount(ms)
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

// statfsSize is the size of the filesystem mounted at dir.
func statfsSize(t *testing.T, dir string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

// xfs snapshots share their base's UUID: a child and a view of its
// parent mounted at once need nouuid.
func TestXFS(t *testing.T) {
	f := newFixture(t)
	d := f.open("xfs", drivers.Options{OptFS: "xfs"})
	f.layer(d, "base", "", "f", "base")
	ms, err := d.Prepare(f.ctx, "child", "base")
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].Type != "xfs" {
		t.Fatalf("mounts %v, want xfs", ms)
	}
	child := f.mount(ms)
	vms, err := d.View(f.ctx, "view", "base")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.read(vms, "f"); got != "base" {
		t.Errorf("view reads %q", got)
	}
	if err := os.WriteFile(filepath.Join(child, "g"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := d.Usage(f.ctx, "child")
	if err != nil || u.Size < 1<<20 || u.Inodes != 1 {
		t.Errorf("usage of a child that wrote one 1 MiB file: %+v, %v", u, err)
	}
}

func TestDmsetupControl(t *testing.T) {
	f := newFixture(t)
	d := f.open("dmsetup", drivers.Options{OptControl: controlDmsetup})
	if got := d.b.ctl.Kind(); got != controlDmsetup {
		t.Fatalf("control %s", got)
	}
	f.layer(d, "base", "", "f", "base")
	ms, err := d.View(f.ctx, "view", "base")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.read(ms, "f"); got != "base" {
		t.Errorf("view reads %q", got)
	}
}

// A child asking for more than its parent's size gets its device and
// filesystem grown; less is refused; a base snapshot smaller than the
// base device gets a filesystem of its own.
func TestSizes(t *testing.T) {
	f := newFixture(t)
	d := f.open("sizes", drivers.Options{OptSize: "1G"})
	f.layer(d, "base", "", "f", "base")
	ms, err := d.Prepare(f.ctx, "bigger", "base", drivers.WithSize(2<<30))
	if err != nil {
		t.Fatal(err)
	}
	dir := f.mount(ms)
	if got := statfsSize(t, dir); got < 3<<29 {
		t.Errorf("a 2 GiB child of a 1 GiB base has a %d-byte filesystem", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "base" {
		t.Errorf("the grown child reads %q, %v", b, err)
	}
	u, err := d.Usage(f.ctx, "bigger")
	if err != nil || u.Size > 4<<20 {
		t.Errorf("usage of a grown child that wrote nothing: %+v, %v (the growth is not its usage)", u, err)
	}
	if _, err := d.Prepare(f.ctx, "smaller", "base", drivers.WithSize(512<<20)); !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("a child smaller than its parent: %v, want ErrInvalidArgument", err)
	}
	ms, err = d.Prepare(f.ctx, "small-base", "", drivers.WithSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	if got := statfsSize(t, f.mount(ms)); got > 64<<20 || got < 32<<20 {
		t.Errorf("a 64 MiB base snapshot has a %d-byte filesystem", got)
	}
}

// With dm.thinpooldev the driver uses the pool and leaves it on Close;
// its snapshots survive a reopen.
func TestUserPool(t *testing.T) {
	f := newFixture(t)
	name := "layerlab-test-userpool"
	ctl := makePool(t, f.dir, name, true)
	opts := drivers.Options{OptThinPool: "/dev/mapper/" + name}
	d := f.open("user", opts)
	if d.b.pool.zeroes || d.b.pool.blockSize != 512<<10 {
		t.Errorf("pool zeroes %v, blocks of %d bytes; want what its table says: skip_block_zeroing, 512 KiB", d.b.pool.zeroes, d.b.pool.blockSize)
	}
	f.layer(d, "base", "", "f", "base")
	// Without zeroing, mkfs zeroes the base device's journal (64 MiB for
	// 10 GiB) rather than leave old blocks of the pool in it.
	var base device
	if err := readJSON(filepath.Join(d.b.dir, "base.json"), &base); err != nil || base.Bytes < 64<<20 {
		t.Errorf("the base device maps %d bytes (%v): its journal was not zeroed", base.Bytes, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Info(name); err != nil {
		t.Fatalf("the user's pool after Close: %v", err)
	}
	d = f.open("user", opts)
	ms, err := d.View(f.ctx, "view", "base")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.read(ms, "f"); got != "base" {
		t.Errorf("view after reopen reads %q", got)
	}
	if _, err := New(f.ctx, filepath.Join(f.dir, "user2"), drivers.Options{OptThinPool: name, OptBlockSize: "128K"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("dm.blocksize with a user pool: %v, want ErrInvalidArgument", err)
	}
}

// makePool makes thin-pool name on two sparse files in dir, removed when
// the test ends, and returns a control to look at it. lvm makes pools
// such as the Vagrant VM's: 512 KiB blocks, no zeroing.
func makePool(t *testing.T, dir, name string, lvm bool) control {
	ctl, err := openIoctlControl()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	var devs []string
	for _, file := range []string{"meta", "data"} {
		path := filepath.Join(dir, name+"-"+file)
		if err := sparse(path, 1<<30); err != nil {
			t.Fatal(err)
		}
		dev, release, err := loopfs.Attach(path)
		if err != nil {
			t.Fatal(err)
		}
		defer release() // the pool holds them from here
		devs = append(devs, dev)
	}
	table := poolTarget(1<<30, devs[0], devs[1], 64<<10)
	if lvm {
		table.Params = devs[0] + " " + devs[1] + " 1024 1024 1 skip_block_zeroing"
	}
	if _, err := ctl.Create(name, table, false); err != nil {
		t.Fatal(err)
	}
	// Drivers opened after this close first (cleanups run last in, first
	// out); the removal is deferred past any device still open.
	t.Cleanup(func() { ctl.Remove(name, true) })
	return ctl
}

// Removing a mounted snapshot defers its device's removal to the
// unmount; Close (or the next open) deletes the thin device.
func TestRemoveMounted(t *testing.T) {
	f := newFixture(t)
	d := f.open("busy", nil)
	ms, err := d.Prepare(f.ctx, "busy", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := f.mount(ms)
	if err := d.Remove(f.ctx, "busy"); err != nil {
		t.Fatalf("remove a mounted snapshot: %v", err)
	}
	name := filepath.Base(ms[0].Source)
	if _, err := d.b.ctl.Info(name); err != nil {
		t.Fatalf("the mounted device went before its unmount: %v", err)
	}
	ids, _ := d.b.index.ids()
	if len(ids) != 1 {
		t.Fatalf("index after the deferred remove: %v, want the pending device", ids)
	}
	if err := mount.UnmountAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(d.b.ctl, name, 10*time.Second); err != nil {
		t.Errorf("device after the unmount: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if ids, _ := d.b.index.ids(); len(ids) != 0 {
		t.Errorf("index after Close: %v, want empty", ids)
	}
}

// waitGone waits until device-mapper no longer has device name, at most
// limit. A deferred remove does not happen within umount(2): the last
// close of the device queues the kernel's deferred-remove work
// (dm_blk_close → dm_deferred_remove), which removes the device a moment
// later, so the test asks until the device is gone or the limit passes.
func waitGone(ctl control, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		info, err := ctl.Info(name)
		switch {
		case errors.Is(err, unix.ENXIO):
			return nil
		case err != nil:
			return err
		case time.Now().After(deadline):
			return fmt.Errorf("%s still exists %v after its last close (open count %d), want it removed", name, limit, info.OpenCount)
		}
		time.Sleep(wait)
	}
}

// crashExit is how the crashing process of TestReopenAfterCrash ends
// (testing refuses os.Exit(0) during a test).
const crashExit = 7

// A process that dies without Close leaves its pool and devices; the
// next open adopts them.
func TestReopenAfterCrash(t *testing.T) {
	if home := os.Getenv("LAYERLAB_DM_CRASH_HOME"); home != "" {
		d, err := New(context.Background(), home, nil)
		if err == nil {
			_, err = d.Prepare(context.Background(), "left", "")
		}
		if err != nil {
			t.Fatal(err)
		}
		os.Exit(crashExit) // no Close
	}
	f := newFixture(t)
	home := filepath.Join(f.dir, "crash")
	cmd := exec.Command(os.Args[0], "-test.run=^TestReopenAfterCrash$")
	cmd.Env = append(os.Environ(), "LAYERLAB_DM_CRASH_HOME="+home)
	if out, err := cmd.CombinedOutput(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != crashExit {
		t.Fatalf("the crashing process: %v\n%s", err, out)
	}
	d := f.open("crash", nil)
	ms, err := d.Mounts(f.ctx, "left")
	if err != nil {
		t.Fatal(err)
	}
	dir := f.mount(ms)
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("after"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A device that has the name the driver derives for a home's pool but is
// not over the home's files (a later loop filesystem can repeat a device
// and inode number) is refused and left alone.
func TestForeignPoolName(t *testing.T) {
	f := newFixture(t)
	home := filepath.Join(f.dir, "foreign")
	if err := os.MkdirAll(filepath.Join(home, "devmapper"), 0o700); err != nil {
		t.Fatal(err)
	}
	name, err := ownPoolName(filepath.Join(home, "devmapper"))
	if err != nil {
		t.Fatal(err)
	}
	ctl := makePool(t, f.dir, name, false)
	if _, err := New(f.ctx, home, nil); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("open with a foreign pool of the home's pool name: %v, want ErrFailedPrecondition", err)
	}
	if _, err := ctl.Info(name); err != nil {
		t.Errorf("the foreign device after the refused open: %v", err)
	}
}
