package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// openers open each overlay driver on a fresh home.
func openers() map[string]func(context.Context, string) (drivers.Driver, error) {
	return map[string]func(context.Context, string) (drivers.Driver, error){
		NameOverlay:  func(ctx context.Context, home string) (drivers.Driver, error) { return NewOverlay(ctx, home, nil) },
		NameOverlay2: func(ctx context.Context, home string) (drivers.Driver, error) { return NewOverlay2(ctx, home, nil) },
	}
}

// committedParent prepares a snapshot, lets fill write into it through its
// mounts and commits it as name.
func committedParent(t *testing.T, ctx context.Context, d drivers.Driver, dir, name string, fill func(root string) error) {
	t.Helper()
	ms, err := d.Prepare(ctx, name+"-active", "")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, name+"-mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		t.Fatal(err)
	}
	err = fill(target)
	if uerr := mount.UnmountAll(target); uerr != nil {
		t.Fatal(uerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, name, name+"-active"); err != nil {
		t.Fatal(err)
	}
}

// option returns the value of key=value in a mount's options.
func option(m drivers.Mount, key string) (string, bool) {
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestMountsPinFeaturesOff checks, for both drivers, that an active child's
// overlay mount asks for index, redirect_dir and metacopy off where this
// kernel has them, that the kernel mounts it, and that the mount behaves
// so: renaming a directory from the lower fails with EXDEV instead of
// leaving a redirect, and a chmod of a lower file copies its data up
// instead of a metacopy stub. Where the kernel's default is on, mountinfo
// must show the feature off too (the kernel lists only non-defaults).
func TestMountsPinFeaturesOff(t *testing.T) {
	pinned := []string{"index", "redirect_dir", "metacopy"}
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	for name, open := range openers() {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fs.Dir, name)
			d, err := open(ctx, filepath.Join(dir, "home"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			committedParent(t, ctx, d, dir, "parent", func(root string) error {
				if err := os.MkdirAll(filepath.Join(root, "dir"), 0o755); err != nil {
					return err
				}
				return os.WriteFile(filepath.Join(root, "file"), []byte("lower data"), 0o644)
			})
			ms, err := d.Prepare(ctx, "child", "parent")
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].Type != "overlay" {
				t.Fatalf("child mounts %+v, want one overlay", ms)
			}
			for _, f := range pinned {
				v, ok := option(ms[0], f)
				has := kernel.Param("overlay", f) != ""
				if has && v != "off" || !has && ok {
					t.Errorf("kernel has %s: %v; option %s=%q (present %v)", f, has, f, v, ok)
				}
			}
			upper, _ := option(ms[0], "upperdir")
			target := filepath.Join(dir, "child-mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := mount.All(ms, target); err != nil {
				t.Fatalf("the kernel refused the options %v: %v", ms[0].Options, err)
			}
			defer mount.UnmountAll(target)

			infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
			if err != nil || len(infos) != 1 {
				t.Fatalf("mountinfo of %s: %v, %v", target, infos, err)
			}
			super := strings.Split(infos[0].VFSOptions, ",")
			for _, f := range pinned {
				if kernel.Param("overlay", f) == "Y" && !slices.Contains(super, f+"=off") {
					t.Errorf("kernel default %s=Y, mount shows %q", f, infos[0].VFSOptions)
				}
			}

			if err := os.Rename(filepath.Join(target, "dir"), filepath.Join(target, "moved")); !errors.Is(err, unix.EXDEV) {
				t.Errorf("rename of a lower directory: %v, want EXDEV (redirect_dir off)", err)
			}
			if err := os.Chmod(filepath.Join(target, "file"), 0o600); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(upper, "file"))
			if err != nil || string(data) != "lower data" {
				t.Errorf("upper copy after chmod: %q, %v; want the data copied up (metacopy off)", data, err)
			}
			if _, err := unix.Lgetxattr(filepath.Join(upper, "file"), "trusted.overlay.metacopy", nil); !errors.Is(err, unix.ENODATA) {
				t.Errorf("upper file after chmod: metacopy xattr lookup %v, want ENODATA", err)
			}
		})
	}
}
