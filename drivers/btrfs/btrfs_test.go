package btrfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dennwc/btrfs"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/quota"
)

const mib = 1 << 20

// env is a driver on a fresh btrfs loop filesystem, with mount points
// outside its home.
type env struct {
	t    *testing.T
	ctx  context.Context
	dir  string // the loop filesystem's mount point
	home string
	work string
	d    drivers.Driver
}

func newEnv(t *testing.T, opts drivers.Options) *env {
	fs := loopfs.ForTest(t, "btrfs", 0)
	e := &env{t: t, ctx: context.Background(), dir: fs.Dir, home: filepath.Join(fs.Dir, "home"), work: t.TempDir()}
	d, err := New(e.ctx, e.home, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	t.Cleanup(func() { d.Close() })
	return e
}

// mount mounts ms, runs fn on the mount point and unmounts it.
func (e *env) mount(ms []drivers.Mount, fn func(dir string)) {
	e.t.Helper()
	target, err := os.MkdirTemp(e.work, "m-")
	if err != nil {
		e.t.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		e.t.Fatal(err)
	}
	defer func() {
		if err := mount.UnmountAll(target); err != nil {
			e.t.Error(err)
		}
	}()
	fn(target)
}

// layer prepares an active snapshot on parent, fills it and commits it.
func (e *env) layer(name, parent string, fill func(dir string), opts ...drivers.Opt) {
	e.t.Helper()
	ms, err := e.d.Prepare(e.ctx, name+"-active", parent, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mount(ms, fill)
	if err := e.d.Commit(e.ctx, name, name+"-active"); err != nil {
		e.t.Fatal(err)
	}
}

func writeFile(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, mib)
	for i := range chunk {
		chunk[i] = byte(i*13 + 1)
	}
	for i := 0; i < n/mib; i++ {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	return f.Sync()
}

// A home that is not on btrfs is refused, naming the filesystem found,
// and left untouched.
func TestRefusesOtherFilesystems(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	home := filepath.Join(fs.Dir, "home")
	if p := Probe(home); p.Available() || !strings.Contains(p.Reason, "ext4") {
		t.Errorf("probe on ext4: %q", p.Reason)
	}
	_, err := New(context.Background(), home, nil)
	if !errors.Is(err, drivers.ErrUnavailable) || !strings.Contains(err.Error(), "ext4") {
		t.Errorf("open on ext4: got %v, want ErrUnavailable naming ext4", err)
	}
	if _, err := os.Stat(home); !os.IsNotExist(err) {
		t.Errorf("the refused home was created: %v", err)
	}
	if _, err := New(context.Background(), home, drivers.Options{"size": "lots"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("size=lots: got %v, want ErrInvalidArgument", err)
	}
}

// A snapshot inherits its source's qgroup limit in the kernel; the driver
// gives each child only the limit asked for it, and views none.
func TestLimitsAreNotInherited(t *testing.T) {
	e := newEnv(t, nil)
	e.layer("limited", "", func(dir string) {
		if err := writeFile(filepath.Join(dir, "f"), 2*mib); err != nil {
			t.Fatal(err)
		}
	}, drivers.WithSize(8*mib))
	ms, err := e.d.Prepare(e.ctx, "child", "limited")
	if err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		if err := writeFile(filepath.Join(dir, "big"), 16*mib); err != nil {
			t.Errorf("16 MiB in an unlimited child of an 8 MiB-limited parent: %v", err)
		}
	})
	if _, err := e.d.View(e.ctx, "view", "limited", drivers.WithSize(mib)); err != nil {
		t.Fatal(err)
	}
	q, _ := quota.NewBtrfs(e.home)
	for _, id := range []string{"2", "3"} { // the child and the view
		got, err := q.Get(e.ctx, quota.Target{Path: filepath.Join(e.home, "snapshots", id, "fs")})
		if err != nil || got.Limit != 0 {
			t.Errorf("snapshot %s: %+v, %v; want no limit", id, got, err)
		}
	}
}

// The size option limits every active snapshot; a label overrides it.
func TestSizeOption(t *testing.T) {
	e := newEnv(t, drivers.Options{"size": "8M"})
	if !e.d.Capabilities().Quota {
		t.Fatalf("capabilities: %+v", e.d.Capabilities())
	}
	ms, err := e.d.Prepare(e.ctx, "default", "")
	if err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		err := writeFile(filepath.Join(dir, "f"), 16*mib)
		if !errors.Is(err, unix.EDQUOT) {
			t.Errorf("16 MiB under size=8M: got %v, want EDQUOT", err)
		}
	})
	if ms, err = e.d.Prepare(e.ctx, "bigger", "", drivers.WithSize(32*mib)); err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		if err := writeFile(filepath.Join(dir, "f"), 16*mib); err != nil {
			t.Errorf("16 MiB under a 32 MiB label: %v", err)
		}
	})
}

// With qgroups on, usage is what a child wrote, not what it inherited:
// bytes from the qgroup, inodes from the comparison with the parent.
func TestUsageCountsOnlyWhatAChildWrote(t *testing.T) {
	e := newEnv(t, drivers.Options{"size": "1G"})
	e.layer("parent", "", func(dir string) {
		if err := writeFile(filepath.Join(dir, "inherited"), 16*mib); err != nil {
			t.Fatal(err)
		}
	})
	ms, err := e.d.Prepare(e.ctx, "child", "parent")
	if err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		if err := writeFile(filepath.Join(dir, "own"), 2*mib); err != nil {
			t.Fatal(err)
		}
	})
	check := func(what string, u drivers.Usage) {
		t.Helper()
		if u.Size < 2*mib || u.Size > 3*mib {
			t.Errorf("%s usage %d bytes; the child wrote 2 MiB on a 16 MiB parent", what, u.Size)
		}
		if u.Inodes != 1 {
			t.Errorf("%s usage %d inodes; the child added one file to a parent of two", what, u.Inodes)
		}
	}
	u, err := e.d.Usage(e.ctx, "child")
	if err != nil {
		t.Fatal(err)
	}
	check("active", u)
	if err := e.d.Commit(e.ctx, "child-committed", "child"); err != nil {
		t.Fatal(err)
	}
	if u, err = e.d.Usage(e.ctx, "child-committed"); err != nil {
		t.Fatal(err)
	}
	check("committed", u)
}

// Remove deletes read-only subvolumes (one an admin made read-only) and
// subvolumes with another nested in them (one a container made), and
// Open sweeps a subvolume no record names.
func TestRemoveAwkwardSubvolumes(t *testing.T) {
	e := newEnv(t, nil)
	ms, err := e.d.Prepare(e.ctx, "ro", "")
	if err != nil {
		t.Fatal(err)
	}
	ro := ms[0].Source
	if err := setReadOnly(ro); err != nil {
		t.Fatal(err)
	}
	if ms, err = e.d.Prepare(e.ctx, "nested", ""); err != nil {
		t.Fatal(err)
	}
	nested := ms[0].Source
	if err := btrfs.CreateSubVolume(filepath.Join(nested, "inner")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(nested, "inner", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"ro", "nested"} {
		if err := e.d.Remove(e.ctx, key); err != nil {
			t.Errorf("remove %s: %v", key, err)
		}
	}
	for _, dir := range []string{ro, nested} {
		if _, err := os.Stat(filepath.Dir(dir)); !os.IsNotExist(err) {
			t.Errorf("%s left after remove: %v", dir, err)
		}
	}

	e.d.Close()
	orphan := filepath.Join(e.home, "snapshots", "999")
	os.Mkdir(orphan, 0o700)
	if err := btrfs.CreateSubVolume(filepath.Join(orphan, "fs")); err != nil {
		t.Fatal(err)
	}
	if err := setReadOnly(filepath.Join(orphan, "fs")); err != nil {
		t.Fatal(err)
	}
	d, err := New(e.ctx, e.home, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan %s survived the open: %v", orphan, err)
	}
}

func setReadOnly(path string) error {
	f, err := btrfs.Open(path, false)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.SetFlags(btrfs.SubvolReadOnly)
}
