package zfs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/quota"
)

const mib = 1 << 20

// TestMain keeps one zfs-fuse daemon for all the tests, each of which
// makes and destroys its own pool: starting and stopping it takes seconds.
// Before it starts one, it checks what Probe says when none runs, which no
// test could see afterwards.
func TestMain(m *testing.M) {
	ctx := context.Background()
	failed := probeWithoutDaemon(ctx)
	release, err := loopfs.HoldZFSDaemon(ctx)
	code := m.Run()
	if err == nil {
		if err := release(); err != nil {
			fmt.Fprintln(os.Stderr, "zfs-fuse:", err)
			code = 1
		}
	}
	if failed != "" {
		fmt.Fprintln(os.Stderr, "FAIL: probe without a zfs-fuse daemon:", failed)
		code = 1
	}
	os.Exit(code)
}

// probeWithoutDaemon returns what is wrong with Probe and New when the
// zfs-fuse daemon is not running, "" when right or when it is running.
func probeWithoutDaemon(ctx context.Context) string {
	if !command.Available("zfs") || !fuse() || daemonReason(ctx) == "" {
		return ""
	}
	dir, err := os.MkdirTemp("", "zfs-probe-")
	if err != nil {
		return err.Error()
	}
	defer os.RemoveAll(dir)
	if p := Probe(dir); !strings.Contains(p.Reason, "zfs-fuse daemon is not running") {
		return fmt.Sprintf("reason %q does not say the daemon is not running", p.Reason)
	}
	if _, err := New(ctx, dir, nil); !errors.Is(err, drivers.ErrUnavailable) {
		return fmt.Sprintf("open: got %v, want ErrUnavailable", err)
	}
	return ""
}

// zget reads one property of a dataset.
func zget(t *testing.T, prop, dataset string) string {
	t.Helper()
	out, err := command.Run(context.Background(), "zfs", "get", "-H", "-o", "value", prop, dataset)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func open(t *testing.T, home string, opts drivers.Options) drivers.Driver {
	t.Helper()
	d, err := New(context.Background(), home, opts)
	if err != nil {
		t.Fatalf("open %s: %v", home, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// mountAt mounts ms on a new directory and unmounts it when the test ends.
func mountAt(t *testing.T, ms []drivers.Mount) string {
	t.Helper()
	dir := t.TempDir()
	if err := mount.All(ms, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(dir) })
	return dir
}

// layer prepares key on parent, lets write fill it and commits it as name.
func layer(t *testing.T, d drivers.Driver, name, parent string, write func(dir string)) {
	t.Helper()
	ctx := context.Background()
	ms, err := d.Prepare(ctx, name+"-active", parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := mountAt(t, ms)
	write(dir)
	if err := mount.UnmountAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, name, name+"-active"); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestParentDataset(t *testing.T) {
	if got := parentDataset("tank/ll", "/"); got != "tank/ll" {
		t.Errorf("home at the mountpoint: parent %q, want the dataset itself", got)
	}
	a, b := parentDataset("tank", "/a/b"), parentDataset("tank", "/a.b")
	if a == b || !strings.HasPrefix(a, "tank/ll-a.b-") || !strings.HasPrefix(b, "tank/ll-a.b-") {
		t.Errorf("/a/b and /a.b: %q and %q, want distinct tank/ll-a.b-HASH", a, b)
	}
	long := parentDataset("tank", "/"+strings.Repeat("x", 300)+"/é d")
	if len(long) > 80 || strings.ContainsAny(long, " é") {
		t.Errorf("long odd path gives %q", long)
	}
}

func TestProbeRefusesOtherFilesystems(t *testing.T) {
	if !command.Available("zfs") {
		p := Probe(t.TempDir())
		if !strings.Contains(p.Reason, "install zfs-fuse or OpenZFS") {
			t.Fatalf("no zfs command: reason %q", p.Reason)
		}
		feature.Skip(t, feature.ZFS, "zfs is not installed: %s", p.Reason)
	}
	z := loopfs.ForTestZFS(t, 0)
	home := t.TempDir()
	b, err := kernel.BackingOf(home)
	if err != nil {
		t.Fatal(err)
	}
	if isZFSMount(b.Type) {
		t.Skipf("%s is itself on zfs", home)
	}
	p := Probe(home)
	if p.Available() || !strings.Contains(p.Reason, "not on a zfs dataset") || !strings.Contains(p.Reason, b.Type) {
		t.Errorf("home on %s: probe reason %q, want one naming %s", b.Type, p.Reason, b.Type)
	}
	_, err = New(context.Background(), home, nil)
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), b.Type) {
		t.Errorf("open on %s: got %v, want ErrInvalidArgument naming %s", b.Type, err, b.Type)
	}
	p = Probe(filepath.Join(z.Dir, "not", "yet"))
	if !p.Available() {
		t.Fatalf("home in the pool: %s", p.Reason)
	}
	t.Logf("facts: %v", p.Facts)
}

// TestLayout checks the datasets behind each kind of snapshot, for a home
// at a dataset's mountpoint and one in a directory inside it.
func TestLayout(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	for _, c := range []struct{ home, parent string }{
		{z.Dir, z.Pool},
		{filepath.Join(z.Dir, "sub", "home"), parentDataset(z.Pool, "/sub/home")},
	} {
		d := open(t, c.home, nil)
		layer(t, d, "base", "", func(dir string) { writeFile(t, filepath.Join(dir, "f"), 1000) })
		ms, err := d.Prepare(ctx, "child", "base")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.View(ctx, "view", "base"); err != nil {
			t.Fatal(err)
		}
		base, child, view := c.parent+"/1", c.parent+"/2", c.parent+"/3"
		if got := zget(t, "origin", base); got != "-" {
			t.Errorf("base %s has origin %s", base, got)
		}
		if got := zget(t, "origin", child); got != base+"@snap" {
			t.Errorf("child origin %s, want %s@snap", got, base)
		}
		if got := zget(t, "origin", view); got != base+"@snap" {
			t.Errorf("view origin %s, want %s@snap", got, base)
		}
		if got := zget(t, "mountpoint", child); got != filepath.Join(c.home, "snapshots", "2") {
			t.Errorf("child mountpoint %s", got)
		}
		if ms[0].Type != "bind" || ms[0].Source != filepath.Join(c.home, "snapshots", "2") {
			t.Errorf("child mounts %+v", ms)
		}
		vms, err := d.Mounts(ctx, "view")
		if err != nil {
			t.Fatal(err)
		}
		dir := mountAt(t, vms)
		if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err == nil {
			t.Errorf("wrote into a view")
		}
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || len(b) != 1000 {
			t.Errorf("view reads f: %d bytes, %v", len(b), err)
		}
	}
}

// TestUsage checks a clone's usage counts what it adds, not what it
// inherits.
func TestUsage(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	d := open(t, filepath.Join(z.Dir, "home"), nil)
	layer(t, d, "base", "", func(dir string) {
		for _, n := range []string{"a", "b", "c", "d"} {
			writeFile(t, filepath.Join(dir, n), 4*mib)
		}
	})
	ms, err := d.Prepare(ctx, "child", "base")
	if err != nil {
		t.Fatal(err)
	}
	dir := mountAt(t, ms)
	for _, n := range []string{"x", "y", "z"} {
		writeFile(t, filepath.Join(dir, n), mib)
	}
	u, err := d.Usage(ctx, "child")
	if err != nil {
		t.Fatal(err)
	}
	if u.Size < 3*mib*9/10 || u.Size > 3*mib*12/10 || u.Inodes != 3 {
		t.Errorf("child wrote 3 files of 1 MiB on a 16 MiB parent: usage %d bytes, %d inodes, want 3 MiB and 3", u.Size, u.Inodes)
	}
	if u, err = d.Usage(ctx, "base"); err != nil || u.Size < 16*mib || u.Inodes != 5 {
		t.Errorf("base of 4 files of 4 MiB: usage %d bytes, %d inodes (%v)", u.Size, u.Inodes, err)
	}
}

// TestBlockGranularityOnPool measures what drivertest's Capabilities check
// cannot on zfs. statfs on a dataset gives f_blocks = referenced + avail
// and f_bfree = avail, so blocks - bfree, the check's "used", is that
// dataset's referenced bytes: the home's stay put while the child's
// include the whole 32 MiB file it shares with its parent. Both of these
// do see the pool: the pool root dataset's used (every block once) and
// statfs's free space, read after forcing a transaction group to disk
// (syncfs does nothing on zfs-fuse).
func TestBlockGranularityOnPool(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	home := filepath.Join(z.Dir, "home")
	type sample struct{ used, free, unsyncedFree int64 }
	measure := func() sample {
		t.Helper()
		var st unix.Statfs_t
		if err := unix.Statfs(home, &st); err != nil {
			t.Fatal(err)
		}
		unsynced := int64(st.Bfree) * st.Bsize
		q, err := quota.ZFS{}.Get(ctx, quota.Target{Path: z.Pool}) // forces the sync
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Statfs(home, &st); err != nil {
			t.Fatal(err)
		}
		return sample{q.Used, int64(st.Bfree) * st.Bsize, unsynced}
	}
	d := open(t, home, nil)
	const size = 32 * mib
	layer(t, d, "parent", "", func(dir string) { writeFile(t, filepath.Join(dir, "big"), size) })
	before := measure()
	ms, err := d.Prepare(ctx, "child", "parent")
	if err != nil {
		t.Fatal(err)
	}
	dir := mountAt(t, ms)
	afterPrepare := measure()
	f, err := os.OpenFile(filepath.Join(dir, "big"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	afterWrite := measure()
	t.Logf("pool used: prepare +%d KiB, 1-byte append to a 32 MiB inherited file +%d KiB", (afterPrepare.used-before.used)>>10, (afterWrite.used-afterPrepare.used)>>10)
	t.Logf("statfs free space, synced: prepare -%d KiB, append -%d KiB; before the forced sync: prepare -%d KiB, append -%d KiB",
		(before.free-afterPrepare.free)>>10, (afterPrepare.free-afterWrite.free)>>10,
		(before.free-afterPrepare.unsyncedFree)>>10, (afterPrepare.free-afterWrite.unsyncedFree)>>10)
	for _, g := range []struct {
		what            string
		prepare, append int64
	}{
		{"pool used", afterPrepare.used - before.used, afterWrite.used - afterPrepare.used},
		{"statfs free space", before.free - afterPrepare.free, afterPrepare.free - afterWrite.free},
	} {
		if g.prepare > size/4 || g.append > size/4 {
			t.Errorf("declared block granularity, but by %s the prepare took %d KiB and the append %d KiB", g.what, g.prepare>>10, g.append>>10)
		}
	}
}

func TestSizeOptionAndLabel(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	for _, bad := range []drivers.Options{{"size": "lots"}, {"nosuch": "1"}} {
		if _, err := New(ctx, filepath.Join(z.Dir, "bad"), bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("options %v: got %v, want ErrInvalidArgument", bad, err)
		}
	}
	home := filepath.Join(z.Dir, "home")
	d := open(t, home, drivers.Options{"size": "12M"})
	parent := parentDataset(z.Pool, "/home")
	limit := func(id string) int64 {
		q, err := quota.ZFS{}.Get(ctx, quota.Target{Path: parent + "/" + id})
		if err != nil {
			t.Fatal(err)
		}
		return q.Limit
	}
	if _, err := d.Prepare(ctx, "default", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prepare(ctx, "own", "", drivers.WithSize(20*mib)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.View(ctx, "view", ""); err != nil {
		t.Fatal(err)
	}
	if got := limit("1"); got != 12*mib {
		t.Errorf("default limit %d, want 12 MiB", got)
	}
	if got := limit("2"); got != 20*mib {
		t.Errorf("labelled limit %d, want 20 MiB", got)
	}
	if got := limit("3"); got != 0 {
		t.Errorf("view limit %d, want none", got)
	}
	_, err := d.Prepare(ctx, "badlabel", "", drivers.WithLabels(map[string]string{drivers.LabelSize: "x"}))
	if !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("bad size label: got %v", err)
	}
}

func TestQuotaController(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	ds := z.Pool + "/q"
	dir := filepath.Join(z.Dir, "q")
	if _, err := command.Run(ctx, "zfs", "create", "-o", "mountpoint="+dir, ds); err != nil {
		t.Fatal(err)
	}
	var c quota.Controller = quota.ZFS{}
	tg := quota.Target{Path: ds}
	if err := c.Set(ctx, tg, 8*mib); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "f"), 2*mib)
	q, err := c.Get(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if q.Limit != 8*mib || q.Used < 2*mib || q.Used > 3*mib {
		t.Errorf("after 2 MiB under 8 MiB: %+v", q)
	}
	if err := c.Clear(ctx, tg); err != nil {
		t.Fatal(err)
	}
	if q, err = c.Get(ctx, tg); err != nil || q.Limit != 0 {
		t.Errorf("after Clear: %+v, %v", q, err)
	}
	if err := c.Set(ctx, tg, 0); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("Set 0: got %v", err)
	}
	if _, err := c.Get(ctx, quota.Target{Path: z.Pool + "/nosuch"}); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("Get of a missing dataset: got %v", err)
	}
}

// TestSweepRemovesOrphansChildrenFirst loses the metadata of a parent and
// its clone; reopening must destroy both, which zfs allows only child
// first.
func TestSweepRemovesOrphansChildrenFirst(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	home := filepath.Join(z.Dir, "home")
	d, err := New(ctx, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	layer(t, d, "p", "", func(string) {})
	if _, err := d.Prepare(ctx, "c", "p"); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(home, core.MetadataFile)); err != nil {
		t.Fatal(err)
	}
	open(t, home, nil)
	out, err := command.Run(ctx, "zfs", "list", "-H", "-o", "name", "-r", parentDataset(z.Pool, "/home"))
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(string(out)); len(lines) != 1 {
		t.Errorf("after the sweep: %v, want only the home's dataset", lines)
	}
}

// TestCloseUnmountsReopenRemounts checks a closed driver leaves no mounts
// and a reopened one mounts its datasets again when asked for mounts.
func TestCloseUnmountsReopenRemounts(t *testing.T) {
	z := loopfs.ForTestZFS(t, 0)
	ctx := context.Background()
	home := filepath.Join(z.Dir, "home")
	var d drivers.Driver
	d, err := New(ctx, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	layer(t, d, "p", "", func(dir string) { writeFile(t, filepath.Join(dir, "f"), 10) })
	ms, err := d.Prepare(ctx, "c", "p")
	if err != nil {
		t.Fatal(err)
	}
	dir := mountAt(t, ms)
	writeFile(t, filepath.Join(dir, "g"), 20)
	mount.UnmountAll(dir)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if points, _ := mount.Under(home); len(points) != 0 {
		t.Fatalf("mounted after Close: %v", points)
	}
	d = open(t, home, nil)
	if ms, err = d.Mounts(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	dir = mountAt(t, ms)
	for name, n := range map[string]int{"f": 10, "g": 20} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || len(b) != n {
			t.Errorf("%s after reopen: %d bytes, %v", name, len(b), err)
		}
	}
	if u, err := d.Usage(ctx, "c"); err != nil || u.Inodes != 1 {
		t.Errorf("usage after reopen: %+v, %v", u, err)
	}
}

// TestFixtureLeavesNothing checks the pool fixture's teardown.
func TestFixtureLeavesNothing(t *testing.T) {
	if err := loopfs.CheckZFS(); err != nil {
		feature.Skip(t, feature.ZFS, "%v", err)
	}
	ctx := context.Background()
	z, err := loopfs.NewZFS(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(z.Dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	bind := t.TempDir()
	if err := mount.All([]drivers.Mount{{Type: "bind", Source: z.Dir, Options: []string{"rbind"}}}, bind); err != nil {
		t.Fatal(err)
	}
	t.Logf("pool %s (%s) at %s", z.Pool, z.Type, z.Dir)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	mount.UnmountAll(bind) // zfs-fuse's pool destroy takes binds with it; kernel zfs may not
	if ok, _ := mount.Mounted(z.Dir); ok {
		t.Errorf("%s still mounted", z.Dir)
	}
	if _, err := os.Stat(z.Image); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("image %s still there: %v", z.Image, err)
	}
	if out, err := command.Run(ctx, "zpool", "list", "-H", "-o", "name"); err == nil && strings.Contains(string(out), z.Pool) {
		t.Errorf("pool %s still exists", z.Pool)
	}
	holders, _ := os.ReadDir(filepath.Join(loopfs.ZFSStateDir, "holders"))
	if _, err := os.Stat(filepath.Join(loopfs.ZFSStateDir, "zfs-fuse.pid")); err == nil && len(holders) == 0 {
		t.Errorf("no fixture holds the daemon, yet its pid file is still there")
	}
}
