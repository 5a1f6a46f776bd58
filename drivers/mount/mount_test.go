package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
)

func TestParse(t *testing.T) {
	flags, data := parse([]string{"ro", "rbind", "nosuid", "lowerdir=/a:/b", "index=off", "rw"})
	if flags != unix.MS_BIND|unix.MS_REC|unix.MS_NOSUID {
		t.Errorf("flags %#x", flags)
	}
	if data != "lowerdir=/a:/b,index=off" {
		t.Errorf("data %q", data)
	}
}

func TestCompactLowerdir(t *testing.T) {
	dir, data, err := compactLowerdir("index=off,lowerdir=/h/l/1:/h/l/22,upperdir=/h/s/3/fs,workdir=/h/s/3/work")
	if err != nil {
		t.Fatal(err)
	}
	if dir != "/h/l" || data != "index=off,lowerdir=1:22,upperdir=/h/s/3/fs,workdir=/h/s/3/work" {
		t.Fatalf("got %q %q", dir, data)
	}
	if _, _, err := compactLowerdir("lowerdir=/a/1:/b/2"); err == nil || !strings.Contains(err.Error(), "share no parent") {
		t.Fatalf("lowerdirs in different directories: %v", err)
	}
}

// An overlay whose options are longer than a page mounts through the
// relative-path fallback, and the mount shows every layer.
func TestLongOverlayMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "mounting needs root")
	}
	base := t.TempDir()
	long := filepath.Join(base, strings.Repeat("d", 100), "l")
	var lowers []string
	for i := 0; i < 100; i++ {
		p := filepath.Join(long, fmt.Sprintf("layer-%03d", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, fmt.Sprintf("f%03d", i)), nil, 0o644)
		lowers = append(lowers, p)
	}
	m := drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}
	if n := len(m.Options[0]); n < os.Getpagesize() {
		t.Fatalf("options are %d bytes; the test needs more than a page", n)
	}
	target := filepath.Join(base, "merged")
	os.Mkdir(target, 0o755)
	if err := All([]drivers.Mount{m}, target); err != nil {
		t.Fatal(err)
	}
	defer UnmountAll(target)
	entries, err := os.ReadDir(target)
	if err != nil || len(entries) != 100 {
		t.Fatalf("merged view has %d entries (%v), want 100", len(entries), err)
	}
	if cwd, _ := os.Getwd(); cwd == long {
		t.Fatal("the chdir leaked into the process")
	}
	if err := UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Mounted(target); ok {
		t.Fatal("still mounted")
	}
}

func TestReadOnlyBind(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "mounting needs root")
	}
	src, target := t.TempDir(), t.TempDir()
	if err := All([]drivers.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	defer UnmountAll(target)
	if err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644); err == nil {
		t.Fatal("wrote through a read-only bind")
	}
}

// InUse finds binds of a path or below it, overlays naming it, and mounts
// inside it, but not the mount that holds the path itself nor mounts of
// unrelated directories.
func TestInUse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	base := t.TempDir()
	dir := func(elem ...string) string {
		p := filepath.Join(append([]string{base}, elem...)...)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mnt := func(m drivers.Mount, target string) {
		t.Helper()
		if err := All([]drivers.Mount{m}, target); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { UnmountAll(target) })
	}
	check := func(want string, paths ...string) {
		t.Helper()
		got, err := InUse(paths...)
		if err != nil || got != want {
			t.Fatalf("InUse(%v) = %q, %v; want %q", paths, got, err, want)
		}
	}
	snap, other := dir("snap", "fs"), dir("other")
	check("", filepath.Dir(snap))
	// A bind of a directory below the path.
	b := dir("bind")
	mnt(drivers.Mount{Type: "bind", Source: snap, Options: []string{"rbind", "ro"}}, b)
	check(b, filepath.Dir(snap))
	check("", other)
	if err := UnmountAll(b); err != nil {
		t.Fatal(err)
	}
	// An overlay whose upperdir lies in the path, and a link naming a lower.
	lower, work, merged := dir("lower"), dir("snap", "work"), dir("merged")
	if err := os.Symlink(lower, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	mnt(drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + filepath.Join(base, "link"), "upperdir=" + snap, "workdir=" + work}}, merged)
	check(merged, filepath.Dir(snap))
	check(merged, filepath.Join(base, "link"))
	check("", other)
	if err := UnmountAll(merged); err != nil {
		t.Fatal(err)
	}
	// A filesystem mounted at the path holds it: not a user; a bind of
	// it elsewhere and a mount inside it are.
	tmp := dir("tmpfs")
	mnt(drivers.Mount{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}, tmp)
	check("", tmp)
	inner := dir("tmpfs", "inner")
	mnt(drivers.Mount{Type: "bind", Source: other, Options: []string{"rbind"}}, inner)
	check(inner, tmp)
	if err := UnmountAll(inner); err != nil {
		t.Fatal(err)
	}
	b2 := dir("bind2")
	mnt(drivers.Mount{Type: "bind", Source: tmp, Options: []string{"rbind"}}, b2)
	check(b2, tmp)
}

// A busy mount is not detached behind the caller's back.
func TestUnmountBusyIsAnError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	target := t.TempDir()
	if err := All([]drivers.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}}}, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnmountAll(target) })
	f, err := os.Create(filepath.Join(target, "open"))
	if err != nil {
		t.Fatal(err)
	}
	err = Unmount(target)
	if !errors.Is(err, unix.EBUSY) || !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("unmount with a file open: %v", err)
	}
	if ok, _ := Mounted(target); !ok {
		t.Fatal("the busy mount was detached")
	}
	f.Close()
	if err := Unmount(target); err != nil {
		t.Fatal(err)
	}
}
