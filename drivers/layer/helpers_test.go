package layer

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive/compression"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// entry is one tar entry to build; Body is the content of regular files.
type entry struct {
	Name, Link, Body string
	Type             byte
	Mode             int64
	Major, Minor     int64
	Xattrs           map[string]string
}

func file(name, body string) entry {
	return entry{Name: name, Body: body, Type: tar.TypeReg, Mode: 0o644}
}
func dir(name string) entry { return entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }
func symlink(name, to string) entry {
	return entry{Name: name, Link: to, Type: tar.TypeSymlink, Mode: 0o777}
}
func hardlink(name, to string) entry {
	return entry{Name: name, Link: to, Type: tar.TypeLink, Mode: 0o644}
}
func device(name string, typ byte, major, minor int64) entry {
	return entry{Name: name, Type: typ, Mode: 0o600, Major: major, Minor: minor}
}

// buildTar writes entries as an uncompressed tar.
func buildTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.Name, Linkname: e.Link, Typeflag: e.Type, Mode: e.Mode,
			Size: int64(len(e.Body)), Devmajor: e.Major, Devminor: e.Minor,
			ModTime: time.Unix(1600000000, 0), Format: tar.FormatPAX,
		}
		for k, v := range e.Xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[xattrPrefix+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar header %s: %v", e.Name, err)
		}
		if _, err := io.WriteString(tw, e.Body); err != nil {
			t.Fatalf("tar body %s: %v", e.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, data []byte, c compression.Compression) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := compression.CompressStream(&buf, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// node is what snapshot records of one path.
type node struct {
	Mode os.FileMode
	Size int64
	Sum  string // content digest of regular files
	Link string
	Rdev uint64
	Nlnk uint64
}

// snapshot records every path under root (root itself included) so a test
// can check that nothing changed.
func snapshot(t testing.TB, root string) map[string]node {
	t.Helper()
	out := map[string]node{}
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		n := node{Mode: fi.Mode(), Size: fi.Size(), Rdev: st.Rdev, Nlnk: uint64(st.Nlink)}
		if fi.IsDir() {
			n.Size = 0 // directory sizes vary with the filesystem
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			n.Link, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			sum := sha256.Sum256(b)
			n.Sum = hex.EncodeToString(sum[:])
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = n
		return err
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

func sameSnapshot(a, b map[string]node) error {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var diffs []string
	for _, k := range keys {
		x, okx := a[k]
		y, oky := b[k]
		if okx != oky || x != y {
			diffs = append(diffs, fmt.Sprintf("%s: %+v (present %v) != %+v (present %v)", k, x, okx, y, oky))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%d paths differ: %v", len(diffs), diffs)
	}
	return nil
}

// sandbox is a target directory with a sentinel directory next to it that
// a layer must never touch.
type sandbox struct {
	Root, Sentinel string
	sentinelBefore map[string]node
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	base := t.TempDir()
	s := &sandbox{Root: filepath.Join(base, "root"), Sentinel: filepath.Join(base, "sentinel")}
	for _, d := range []string{s.Root, s.Sentinel} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.Sentinel, "keep"), []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root, "existing"), []byte("from a lower layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.sentinelBefore = snapshot(t, s.Sentinel)
	return s
}

// checkSentinel fails the test when anything under the sentinel changed.
func (s *sandbox) checkSentinel(t *testing.T) {
	t.Helper()
	if err := sameSnapshot(s.sentinelBefore, snapshot(t, s.Sentinel)); err != nil {
		t.Errorf("the sentinel next to the target changed: %v", err)
	}
}

// overlayFixture is an overlay mount in a loop-mounted ext4: Lower holds
// the parent's files, Merged is the snapshot's view.
type overlayFixture struct {
	Base, Lower, Upper, Work, Merged string
}

func newOverlay(t *testing.T, lfs *loopfs.FS, name string, lower string) *overlayFixture {
	t.Helper()
	base := filepath.Join(lfs.Dir, name)
	o := &overlayFixture{Base: base, Lower: lower, Upper: filepath.Join(base, "upper"), Work: filepath.Join(base, "work"), Merged: filepath.Join(base, "merged")}
	for _, d := range []string{o.Upper, o.Work, o.Merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + o.Lower, "upperdir=" + o.Upper, "workdir=" + o.Work,
	}}
	if err := mount.All([]drivers.Mount{m}, o.Merged); err != nil {
		feature.Skip(t, feature.Overlay, "overlay mount: %v", err)
	}
	t.Cleanup(func() { o.unmount(t) })
	return o
}

func (o *overlayFixture) unmount(t *testing.T) {
	t.Helper()
	if err := mount.UnmountAll(o.Merged); err != nil {
		t.Errorf("unmount %s: %v", o.Merged, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
