package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// The failure kinds of issue 9 that used to leave a half-written snapshot
// (hardlink to a missing file, file under a file, bad security.capability,
// self-hardlink deleting the parent's file, utimes of a directory the layer
// deleted) are cases of TestApplyRefusesHostileLayers: refused by the
// first pass, the snapshot unchanged. The tests here cover what only the
// second pass can meet: those must say ErrUnusable.

// flipper is a seekable layer whose bytes change after the first read:
// the second pass sees other headers than the first.
type flipper struct {
	first, second []byte
	r             *bytes.Reader
	rewound       bool
}

func (f *flipper) Read(p []byte) (int, error) { return f.r.Read(p) }

func (f *flipper) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart && off == 0 {
		if pos, _ := f.r.Seek(0, io.SeekCurrent); pos > 16 {
			f.r = bytes.NewReader(f.second)
		}
	}
	return f.r.Seek(off, whence)
}

// TestApplyChangedInputIsUnusable: a seekable layer rewritten between the
// passes is caught at the first changed header; entries before it are
// written by then, so the error says ErrUnusable.
func TestApplyChangedInputIsUnusable(t *testing.T) {
	s := newSandbox(t)
	good := buildTar(t, file("a", "a"), file("b", "b"))
	bad := buildTar(t, file("a", "a"), symlink("b", s.Sentinel+"/keep"))
	f := &flipper{first: good, second: bad, r: bytes.NewReader(good)}
	_, err := Apply(context.Background(), s.Root, f)
	if !errors.Is(err, ErrUnusable) || !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("error %v: want ErrUnusable and ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), "changed between the passes") {
		t.Errorf("error %q does not say what happened", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root, "b")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the changed entry was applied: %v", err)
	}
	s.checkSentinel(t)
}

// TestApplyOutOfSpaceIsUnusable: a layer that fits the budget it was given
// but not the filesystem fails in the second pass with ENOSPC, and says
// the snapshot must be removed. Without WithBudget the default budget (the
// free space) refuses the same layer up front, leaving the target as it
// was.
func TestApplyOutOfSpaceIsUnusable(t *testing.T) {
	lfs := loopfs.ForTest(t, "ext4", 0)
	root := filepath.Join(lfs.Dir, "snap")
	must(t, os.Mkdir(root, 0o755))
	fillTo(t, lfs.Dir, 16<<20)
	var layer bytes.Buffer
	must(t, Generate(&layer, 1, Spec{Files: 16, FileSize: 8 << 20})) // more than the free space plus what ext4 keeps for root

	_, err := Apply(context.Background(), root, bytes.NewReader(layer.Bytes()))
	if !errors.Is(err, drivers.ErrInvalidArgument) || errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "more than the budget") {
		t.Fatalf("default budget: error %v, want a refusal before writing", err)
	}
	if des, _ := os.ReadDir(root); len(des) != 0 {
		t.Fatalf("a refused layer wrote %d entries", len(des))
	}

	_, err = Apply(context.Background(), root, bytes.NewReader(layer.Bytes()), WithBudget(Budget{Bytes: 1 << 40}))
	if !errors.Is(err, ErrUnusable) {
		t.Fatalf("error %v: want ErrUnusable", err)
	}
	if !strings.Contains(err.Error(), "no space left") {
		t.Errorf("error %q does not give the cause", err)
	}
}

// fillTo allocates a file in dir that leaves about free bytes free.
func fillTo(t *testing.T, dir string, free int64) {
	t.Helper()
	var st unix.Statfs_t
	must(t, unix.Statfs(dir, &st))
	avail := int64(st.Bavail) * st.Bsize
	f, err := os.Create(filepath.Join(dir, "filler"))
	must(t, err)
	defer f.Close()
	must(t, unix.Fallocate(int(f.Fd()), 0, 0, avail-free))
}

// TestApplyWhiteoutInMissingDirectory: a whiteout or opaque marker in a
// directory the snapshot lacks deletes nothing and creates nothing.
func TestApplyWhiteoutInMissingDirectory(t *testing.T) {
	s := newSandbox(t)
	before := snapshot(t, s.Root)
	layer := buildTar(t, file("nodir/.wh.x", ""), file("a/b/.wh..wh..opq", ""), file("nodir/sub/.wh.y", ""))
	st, err := Apply(context.Background(), s.Root, bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	if st.Whiteouts != 3 {
		t.Errorf("stats %+v, want 3 whiteouts", st)
	}
	if err := sameSnapshot(before, snapshot(t, s.Root)); err != nil {
		t.Errorf("whiteouts in missing directories changed the target: %v", err)
	}
}
