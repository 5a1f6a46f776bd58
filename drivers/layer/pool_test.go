package layer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/loopfs"
)

// layerFile is data in a file of its own, opened: Apply reads it in place
// and its pool copies from it.
func layerFile(t testing.TB, data []byte) io.Reader {
	t.Helper()
	return layerFileIn(t, t.TempDir(), data)
}

func layerFileIn(t testing.TB, dir string, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(dir, "layer.tar")
	must(t, os.WriteFile(p, data, 0o600))
	f, err := os.Open(p)
	must(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// collisionLower is a snapshot whose paths the collision layer writes
// over: a file, a directory with content and a symlink where the layer
// puts regular files, and lib -> usr/lib, through which two entries of
// the layer name one file.
func collisionLower(t *testing.T, root string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(root, "was-file"), []byte("lower"), 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "was-dir/sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "was-dir/sub/x"), []byte("lower"), 0o644))
	must(t, os.Symlink("was-file", filepath.Join(root, "was-link")))
	must(t, os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755))
	must(t, os.Symlink("usr/lib", filepath.Join(root, "lib")))
}

func collisionLayer(t *testing.T) []byte {
	es := []entry{dir("d/")}
	for i := 0; i < 300; i++ { // enough to keep every worker busy
		es = append(es, file(filepath.Join("d", string(rune('a'+i%26))+string(rune('a'+i/26))), string(bytes.Repeat([]byte{byte(i)}, 100+i))))
	}
	es = append(es,
		file("was-file", "layer"), file("was-dir", "layer"), file("was-link", "layer"),
		file("usr/lib/x", "first"), file("lib/x", "second"),
		file("target", "linked"), hardlink("d/link", "target"),
	)
	return buildTar(t, es...)
}

// TestPoolMatchesSerial applies layers whose files collide with the
// snapshot and with each other through the pool (from a file on the same
// filesystem, where content goes by copy_file_range, and on another, where
// it goes by pread and write) and checks the trees equal the serial
// second pass's.
func TestPoolMatchesSerial(t *testing.T) {
	layer := collisionLayer(t)
	serial := t.TempDir()
	collisionLower(t, serial)
	st, err := Apply(context.Background(), serial, bytes.NewReader(layer))
	must(t, err)
	want := snapshot(t, serial)
	if got, _ := os.ReadFile(filepath.Join(serial, "usr/lib/x")); string(got) != "second" {
		t.Fatalf("serial apply: usr/lib/x is %q, want the second entry's content", got)
	}

	other := loopfs.ForTest(t, "ext4", 64<<20)
	for _, c := range []struct{ name, layerDir string }{
		{"same filesystem", ""},
		{"other filesystem", other.Dir},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			collisionLower(t, root)
			dir := c.layerDir
			if dir == "" {
				dir = t.TempDir()
			} else {
				dir, err = os.MkdirTemp(dir, "layer-")
				must(t, err)
			}
			got, err := Apply(context.Background(), root, layerFileIn(t, dir, layer))
			must(t, err)
			if got != st || got.DiffID != digest.FromBytes(layer) {
				t.Errorf("stats %+v, want %+v (the serial apply's) with the layer's DiffID", got, st)
			}
			if err := sameSnapshot(want, snapshot(t, root)); err != nil {
				t.Errorf("pool result differs from the serial one: %v", err)
			}
			var fi syscall.Stat_t
			must(t, syscall.Lstat(filepath.Join(root, "d/ab"), &fi))
			if mt := time.Unix(fi.Mtim.Unix()); !mt.Equal(time.Unix(1600000000, 0)) || fi.Uid != 0 {
				t.Errorf("d/ab: mtime %v uid %d, want the header's (2020-09-13, 0)", mt, fi.Uid)
			}
		})
	}
}

// TestPoolStopsOnFailure checks a failing pool write surfaces as an
// unusable snapshot and leaves no worker running (the race detector and
// the next test would see one writing).
func TestPoolStopsOnFailure(t *testing.T) {
	lfs := loopfs.ForTest(t, "ext4", loopfs.MinSize)
	// Fill the filesystem but for 12 MiB (root may use the reserved blocks
	// too); the layer brings 24.
	var st unix.Statfs_t
	must(t, unix.Statfs(lfs.Dir, &st))
	fill, err := os.Create(filepath.Join(lfs.Dir, "fill"))
	must(t, err)
	err = unix.Fallocate(int(fill.Fd()), 0, 0, int64(st.Bfree)*st.Bsize-12<<20)
	fill.Close()
	must(t, err)
	var es []entry
	for i := 0; i < 24; i++ {
		es = append(es, file("big"+string(rune('a'+i)), string(bytes.Repeat([]byte{1}, 1<<20))))
	}
	layer := buildTar(t, es...)
	root := filepath.Join(lfs.Dir, "root")
	must(t, os.Mkdir(root, 0o755))
	// A budget past the filesystem's size gets the layer past the first
	// pass; the disk then fills during the second.
	_, err = Apply(context.Background(), root, layerFile(t, layer), WithBudget(Budget{Bytes: 1 << 40}))
	if !errors.Is(err, ErrUnusable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Apply on a full filesystem: %v, want ENOSPC wrapping ErrUnusable", err)
	}
}
