package vfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// Storage that no record names — what a crash between making a snapshot's
// directory and committing its record leaves — is swept on open, and
// recorded snapshots are not touched.
func TestOpenSweepsOrphans(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	home := filepath.Join(fs.Dir, "home")
	d, err := New(ctx, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prepare(ctx, "kept", ""); err != nil {
		t.Fatal(err)
	}
	d.Close()
	orphan := filepath.Join(home, "snapshots", "999")
	if err := os.MkdirAll(filepath.Join(orphan, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err = New(ctx, home, nil); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphan %s survived the open: %v", orphan, err)
	}
	ms, err := d.Mounts(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ms[0].Source); err != nil {
		t.Fatalf("recorded snapshot's directory: %v", err)
	}
}

// On a filesystem that reflinks, the opened driver says so.
func TestCapabilitiesFollowTheBackingFilesystem(t *testing.T) {
	for fstype, want := range map[string]drivers.Granularity{"ext4": drivers.GranularitySnapshot, "xfs": drivers.GranularityBlock} {
		fs := loopfs.ForTest(t, fstype, 0)
		d, err := New(context.Background(), filepath.Join(fs.Dir, "home"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Capabilities().Granularity; got != want {
			t.Errorf("vfs on %s: granularity %s, want %s (%v)", fstype, got, want, d.Capabilities().Notes)
		}
		d.Close()
	}
}

// The probe's class reaches the caller of Registry.Open: a home that is a
// file is the caller's mistake, not a driver missing here.
func TestRegistryOpenKeepsTheProbesClass(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if p := Probe(file); p.Class != drivers.ErrInvalidArgument {
		t.Errorf("probe of a file home: class %v, reason %q", p.Class, p.Reason)
	}
	_, err := drivers.NewRegistry(Factory()).Open(context.Background(), Name, file, nil)
	if !errors.Is(err, drivers.ErrInvalidArgument) || errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("registry open of a file home: %v, want ErrInvalidArgument", err)
	}
}

// A child's copy of its parent keeps every directory's times, so Diff of
// the child against the parent sees no change in them.
func TestCopyKeepsDirectoryTimes(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	d, err := New(ctx, filepath.Join(fs.Dir, "home"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ms, err := d.Prepare(ctx, "parent-active", "")
	if err != nil {
		t.Fatal(err)
	}
	root := ms[0].Source
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	dirs := []string{"a/b/c", "a/b", "a", "."}
	if err := os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a/b/c/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range dirs {
		if err := os.Chtimes(filepath.Join(root, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Commit(ctx, "parent", "parent-active"); err != nil {
		t.Fatal(err)
	}
	for _, mk := range []func() ([]drivers.Mount, error){
		func() ([]drivers.Mount, error) { return d.Prepare(ctx, "child", "parent") },
		func() ([]drivers.Mount, error) { return d.View(ctx, "view", "parent") },
	} {
		ms, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range dirs {
			fi, err := os.Stat(filepath.Join(ms[0].Source, p))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(old) {
				t.Errorf("%s in the copy: mtime %v, want the parent's %v", p, fi.ModTime(), old)
			}
		}
	}
}
