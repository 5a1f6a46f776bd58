package btrfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// WalkChanges reports exactly what the child changed, named by the
// kernel's send stream: modified, deleted, added (with what a new
// directory holds), renamed (the old name deleted, the new one added whole)
// and hardlinked, and leaves no scratch subvolume behind.
func TestWalkChangesReportsTheChanges(t *testing.T) {
	e := newEnv(t, nil)
	ms, err := e.d.Prepare(e.ctx, "p-active", "")
	if err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		for _, d := range []string{"keep", "olddir/sub"} {
			mustMkdir(t, filepath.Join(dir, d))
		}
		for _, f := range []string{"keep/k", "mod", "gone", "olddir/sub/x", "chmod"} {
			mustWrite(t, filepath.Join(dir, f), "parent "+f)
		}
	})
	if err := e.d.Commit(e.ctx, "p", "p-active"); err != nil {
		t.Fatal(err)
	}
	if ms, err = e.d.Prepare(e.ctx, "c", "p"); err != nil {
		t.Fatal(err)
	}
	e.mount(ms, func(dir string) {
		mustWrite(t, filepath.Join(dir, "mod"), "changed")
		if err := os.Remove(filepath.Join(dir, "gone")); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, "chmod"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustMkdir(t, filepath.Join(dir, "new/deep"))
		mustWrite(t, filepath.Join(dir, "new/deep/f"), "new")
		if err := os.Rename(filepath.Join(dir, "olddir"), filepath.Join(dir, "moved")); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(filepath.Join(dir, "mod"), filepath.Join(dir, "mod-link")); err != nil {
			t.Fatal(err)
		}
	})
	var got []string
	var root string
	err = e.d.(drivers.ChangeWalker).WalkChanges(e.ctx, "c", func(r string) error { root = r; return nil },
		func(k drivers.ChangeKind, p string, fi os.FileInfo) error {
			got = append(got, fmt.Sprintf("%s %s", map[drivers.ChangeKind]string{drivers.ChangeAdd: "A", drivers.ChangeModify: "M", drivers.ChangeDelete: "D"}[k], p))
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := "M /chmod; D /gone; M /mod; A /mod-link; A /moved; A /moved/sub; A /moved/sub/x; A /new; A /new/deep; A /new/deep/f; D /olddir"
	if strings.Join(got, "; ") != want {
		t.Errorf("changes:\n got  %s\n want %s", strings.Join(got, "; "), want)
	}
	if root == "" {
		t.Error("start was not called with the snapshot's root")
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("the read-only snapshot %s is still there after the walk: %v", root, err)
	}
	entries, _ := os.ReadDir(e.home)
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), sendPrefix) {
			t.Errorf("scratch %s left in the home", de.Name())
		}
	}
}

// A scratch directory a crash left (with its read-only snapshot) is
// removed when the driver opens again.
func TestOpenSweepsSendScratch(t *testing.T) {
	e := newEnv(t, nil)
	if _, err := e.d.Prepare(e.ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	e.d.Close()
	scratch := filepath.Join(e.home, sendPrefix+"crashed")
	mustMkdir(t, scratch)
	if err := snapshotRO(filepath.Join(e.home, "snapshots", "1", "fs"), filepath.Join(scratch, "child")); err != nil {
		t.Fatal(err)
	}
	d, err := New(e.ctx, e.home, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := os.Stat(scratch); !os.IsNotExist(err) {
		t.Errorf("scratch %s survived the open: %v", scratch, err)
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
