package core

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/continuity/fs"
)

func blocksOf(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func write(t *testing.T, path string, n int, b byte) {
	t.Helper()
	data := make([]byte, n)
	for i := range data {
		data[i] = b + byte(i%7)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// parentTree makes a parent tree whose mtimes lie an hour back, so a
// change in the child cannot share its parent's timestamp, and a full copy
// of it as the child, the way vfs makes a child.
func parentTree(t *testing.T) (parent, child string) {
	t.Helper()
	parent, child = filepath.Join(t.TempDir(), "parent"), filepath.Join(t.TempDir(), "child")
	for _, d := range []string{parent, filepath.Join(parent, "dir"), filepath.Join(parent, "dir", "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(parent, "big"), 256<<10, 1)
	write(t, filepath.Join(parent, "small"), 100, 2)
	for _, f := range []string{"a", "b", "sub/c"} {
		write(t, filepath.Join(parent, "dir", f), 5000, 3)
	}
	past := time.Now().Add(-time.Hour)
	err := filepath.Walk(parent, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, past, past)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.CopyDir(child, parent); err != nil {
		t.Fatal(err)
	}
	return parent, child
}

func TestDiffUsageOfAnUnchangedCopyIsZero(t *testing.T) {
	parent, child := parentTree(t)
	u, err := DiffUsage(context.Background(), parent, child)
	if err != nil {
		t.Fatal(err)
	}
	if u.Size != 0 || u.Inodes != 0 {
		t.Errorf("an unchanged copy adds %+v, want nothing", u)
	}
}

func TestDiffUsageCountsAddedModifiedAndDeleted(t *testing.T) {
	parent, child := parentTree(t)
	added := filepath.Join(child, "dir", "added")
	write(t, added, 1<<20, 4)
	if err := os.Link(added, filepath.Join(child, "added-link")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(child, "small"), 100, 9) // same size, new content and mtime
	if err := os.RemoveAll(filepath.Join(child, "dir", "sub")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(child, "big")); err != nil {
		t.Fatal(err)
	}
	u, err := DiffUsage(context.Background(), parent, child)
	if err != nil {
		t.Fatal(err)
	}
	// added (two links, one inode), small modified, dir/sub deleted as
	// one entry with its contents, big deleted.
	wantSize := blocksOf(t, added) + blocksOf(t, filepath.Join(child, "small"))
	if u.Size != wantSize || u.Inodes != 4 {
		t.Errorf("got %+v, want %d bytes and 4 inodes (1 added, 1 modified, 2 deleted)", u, wantSize)
	}
	if u.Size < 1<<20 {
		t.Errorf("size %d is less than the 1 MiB written", u.Size)
	}
}

func TestDiffUsageWithoutParentIsTheWholeTree(t *testing.T) {
	parent, _ := parentTree(t)
	u, err := DiffUsage(context.Background(), "", parent)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := DiskUsage(context.Background(), parent)
	if err != nil {
		t.Fatal(err)
	}
	if u != whole || u.Inodes != 8 { // root, dir, dir/sub and five files
		t.Errorf("got %+v, want the whole tree %+v with 8 inodes", u, whole)
	}
}

func TestDiffUsageOfAMissingTreeFails(t *testing.T) {
	parent, _ := parentTree(t)
	if _, err := DiffUsage(context.Background(), parent, filepath.Join(t.TempDir(), "nosuch")); err == nil {
		t.Error("a missing tree measured without error")
	}
}
