package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	continuityfs "github.com/containerd/continuity/fs"
	"github.com/containerd/continuity/fs/fstest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// tarEntry is what the diff tests compare of one tar entry.
type tarEntry struct {
	Type       byte
	Mode       int64
	UID, GID   int
	Size       int64
	Sum, Link  string
	ModTime    time.Time
	Major, Min int64
	Xattrs     string
}

// readTar returns the entries of a layer by clean name, and the names in
// order.
func readTar(t *testing.T, data []byte) (map[string]tarEntry, []string) {
	t.Helper()
	out := map[string]tarEntry{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, order
		}
		must(t, err)
		body, err := io.ReadAll(tr)
		must(t, err)
		sum := sha256.Sum256(body)
		var xattrs []string
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				xattrs = append(xattrs, k+"="+v)
			}
		}
		sort.Strings(xattrs)
		name := path.Clean(hdr.Name)
		if _, dup := out[name]; dup {
			t.Errorf("entry %s appears twice", name)
		}
		out[name] = tarEntry{hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Size, hex.EncodeToString(sum[:]), hdr.Linkname, hdr.ModTime, hdr.Devmajor, hdr.Devminor, strings.Join(xattrs, ",")}
		order = append(order, name)
	}
}

// hidden is the set of lower paths the whiteouts of a layer delete or hide.
func hidden(t *testing.T, entries map[string]tarEntry, lower string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	addTree := func(rel string) {
		_ = filepath.Walk(filepath.Join(lower, rel), func(p string, _ os.FileInfo, err error) error {
			if err == nil {
				r, _ := filepath.Rel(lower, p)
				out[r] = true
			}
			return nil
		})
	}
	for name := range entries {
		dir, base := path.Split(name)
		switch {
		case base == whiteoutOpaque:
			des, _ := os.ReadDir(filepath.Join(lower, dir))
			for _, de := range des {
				addTree(path.Join(dir, de.Name()))
			}
		case strings.HasPrefix(base, whiteoutPrefix):
			addTree(path.Join(dir, strings.TrimPrefix(base, whiteoutPrefix)))
		}
	}
	return out
}

// changedSnapshot makes a lower tree in a loop-mounted ext4, mounts an
// overlay on it and makes every kind of change through the merged view.
func changedSnapshot(t *testing.T) (*loopfs.FS, *overlayFixture) {
	lfs := loopfs.ForTest(t, "ext4", 0)
	lower := filepath.Join(lfs.Dir, "lower")
	for _, d := range []string{"etc", "usr/bin", "usr/share/doc", "var/log", "data/sub", "gone"} {
		must(t, os.MkdirAll(filepath.Join(lower, d), 0o755))
	}
	for f, mode := range map[string]os.FileMode{
		"etc/passwd": 0o644, "etc/hosts": 0o644, "usr/bin/tool": 0o755, "usr/share/doc/readme": 0o644,
		"var/log/old.log": 0o640, "data/one": 0o644, "data/two": 0o644, "data/sub/three": 0o644,
		"gone/x": 0o644, "gone/y": 0o644, "modme": 0o644, "chmodme": 0o644,
	} {
		must(t, os.WriteFile(filepath.Join(lower, f), []byte("lower "+f+"\n"), mode))
	}
	must(t, os.Symlink("usr/bin", filepath.Join(lower, "bin")))

	o := newOverlay(t, lfs, "snap", lower)
	m := func(p string) string { return filepath.Join(o.Merged, p) }
	must(t, os.MkdirAll(m("new"), 0o750))                                     // add a directory
	must(t, os.WriteFile(m("new/file.txt"), []byte("brand new\n"), 0o644))    // add a file
	must(t, os.Link(m("new/file.txt"), m("new/hard")))                        // and a hardlink to it
	must(t, unix.Lsetxattr(m("new/file.txt"), "user.test", []byte("yes"), 0)) // a user xattr travels
	must(t, os.WriteFile(m("etc/newconf"), []byte("k=v\n"), 0o600))           // add in a lower dir
	must(t, os.WriteFile(m("modme"), []byte("changed\n"), 0o644))             // modify
	f, err := os.OpenFile(m("usr/share/doc/readme"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("appended\n") // modify deep down: parents are copied up
	must(t, errors.Join(err, f.Close()))
	must(t, os.Remove(m("etc/hosts")))                               // delete a file
	must(t, os.Remove(m("var/log/old.log")))                         // delete in a nested dir
	must(t, os.RemoveAll(m("gone")))                                 // delete a directory
	must(t, os.RemoveAll(m("data")))                                 // delete a directory...
	must(t, os.Mkdir(m("data"), 0o700))                              // ...and make it again: opaque
	must(t, os.WriteFile(m("data/fresh"), []byte("fresh\n"), 0o644)) // with new content
	must(t, os.Chmod(m("chmodme"), 0o600))                           // chmod: metadata copy-up
	must(t, os.Lchown(m("etc/passwd"), 1000, 1000))                  // chown
	must(t, os.Symlink("new/file.txt", m("latest")))                 // symlink
	must(t, os.Chtimes(m("modme"), time.Unix(1700000000, 0), time.Unix(1700000000, 0)))
	return lfs, o
}

// committedView mounts the upper over the lower read-only, as overlay2
// mounts a view of a committed snapshot.
func committedView(t *testing.T, lfs *loopfs.FS, o *overlayFixture) string {
	t.Helper()
	view := filepath.Join(lfs.Dir, "view")
	must(t, os.MkdirAll(view, 0o755))
	mnt := drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + o.Upper + ":" + o.Lower}}
	must(t, mount.All([]drivers.Mount{mnt}, view))
	t.Cleanup(func() {
		if err := mount.UnmountAll(view); err != nil {
			t.Errorf("unmount %s: %v", view, err)
		}
	})
	return view
}

// TestDiffEquivalence diffs the same overlay snapshot both ways and checks
// they carry the same files and hide the same lower paths.
func TestDiffEquivalence(t *testing.T) {
	ctx := context.Background()
	_, o := changedSnapshot(t)
	var generic, native bytes.Buffer
	if _, err := Diff(ctx, &generic, o.Lower, o.Merged); err != nil {
		t.Fatal(err)
	}
	o.unmount(t) // the native diff reads a committed upper, as overlay2 would
	must(t, DiffOverlayUpper(ctx, &native, o.Upper, []string{o.Lower}))

	g, _ := readTar(t, generic.Bytes())
	n, order := readTar(t, native.Bytes())
	split := func(m map[string]tarEntry) (files map[string]tarEntry, wh []string) {
		files = map[string]tarEntry{}
		for k, v := range m {
			if isWhiteout(k) {
				wh = append(wh, k)
				continue
			}
			v.Xattrs = "" // the generic diff carries security.capability only
			files[k] = v
		}
		sort.Strings(wh)
		return files, wh
	}
	gf, gw := split(g)
	nf, nw := split(n)
	var diffs []string
	for k := range gf {
		if _, ok := nf[k]; !ok {
			diffs = append(diffs, "only in generic: "+k)
		}
	}
	for k, v := range nf {
		if w, ok := gf[k]; !ok {
			diffs = append(diffs, "only in native: "+k)
		} else if v != w {
			diffs = append(diffs, fmt.Sprintf("%s: native %+v, generic %+v", k, v, w))
		}
	}
	sort.Strings(diffs)
	for _, d := range diffs {
		t.Error(d)
	}

	wantNative := []string{".wh.gone", "data/.wh..wh..opq", "etc/.wh.hosts", "var/log/.wh.old.log"}
	if fmt.Sprint(nw) != fmt.Sprint(wantNative) {
		t.Errorf("native whiteouts %v, want %v", nw, wantNative)
	}
	wantGeneric := []string{".wh.gone", "data/.wh.one", "data/.wh.sub", "data/.wh.two", "etc/.wh.hosts", "var/log/.wh.old.log"}
	if fmt.Sprint(gw) != fmt.Sprint(wantGeneric) {
		t.Errorf("generic whiteouts %v, want %v", gw, wantGeneric)
	}
	hg, hn := hidden(t, g, o.Lower), hidden(t, n, o.Lower)
	if fmt.Sprint(hg) != fmt.Sprint(hn) {
		t.Errorf("the diffs hide different lower paths: generic %v, native %v", hg, hn)
	}

	// The native diff keeps user xattrs and drops overlay's own.
	if x := n["new/file.txt"].Xattrs; x != "SCHILY.xattr.user.test=yes" {
		t.Errorf("new/file.txt xattrs %q, want user.test only", x)
	}
	for k, v := range n {
		if strings.Contains(v.Xattrs, ".overlay.") {
			t.Errorf("%s carries overlay's private xattrs: %s", k, v.Xattrs)
		}
	}
	// Parents before children, the opaque marker right after its directory.
	seen := map[string]bool{}
	for i, name := range order {
		if d := path.Dir(name); d != "." && !seen[d] {
			t.Errorf("%s comes before its directory %s", name, d)
		}
		if path.Base(name) == whiteoutOpaque && (i == 0 || order[i-1] != path.Dir(name)) {
			t.Errorf("%s does not follow its directory", name)
		}
		seen[name] = true
	}
}

// TestDiffRoundTrip applies each diff onto a fresh copy of the parent, and
// onto a fresh overlay snapshot of it, and compares the result with the
// committed snapshot.
func TestDiffRoundTrip(t *testing.T) {
	ctx := context.Background()
	lfs, o := changedSnapshot(t)
	var generic, native bytes.Buffer
	if _, err := Diff(ctx, &generic, o.Lower, o.Merged); err != nil {
		t.Fatal(err)
	}
	o.unmount(t)
	must(t, DiffOverlayUpper(ctx, &native, o.Upper, []string{o.Lower}))
	want := committedView(t, lfs, o)

	for _, c := range []struct {
		name  string
		layer []byte
	}{{"generic", generic.Bytes()}, {"native", native.Bytes()}} {
		t.Run(c.name+"/copy", func(t *testing.T) {
			dst := filepath.Join(lfs.Dir, "copy-"+c.name)
			must(t, os.Mkdir(dst, 0o755))
			must(t, continuityfs.CopyDir(dst, o.Lower)) // what a vfs snapshot of the parent holds
			if _, err := Apply(ctx, dst, bytes.NewReader(c.layer)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if err := fstest.CheckDirectoryEqual(want, dst); err != nil {
				t.Error(err)
			}
		})
		t.Run(c.name+"/overlay", func(t *testing.T) {
			fresh := newOverlay(t, lfs, "fresh-"+c.name, o.Lower)
			if _, err := Apply(ctx, fresh.Merged, bytes.NewReader(c.layer)); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if err := fstest.CheckDirectoryEqual(want, fresh.Merged); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestDiffOverlayUpperRefusesRedirects(t *testing.T) {
	upper := t.TempDir()
	must(t, os.Mkdir(filepath.Join(upper, "moved"), 0o755))
	if err := unix.Lsetxattr(filepath.Join(upper, "moved"), "trusted.overlay.redirect", []byte("/orig"), 0); err != nil {
		feature.Skip(t, feature.Overlay, "overlay's trusted xattrs: %v", err)
	}
	err := DiffOverlayUpper(context.Background(), io.Discard, upper, nil)
	if !errors.Is(err, drivers.ErrNotImplemented) || !strings.Contains(err.Error(), "moved") {
		t.Errorf("redirected directory: %v", err)
	}
	if err := DiffOverlayUpper(context.Background(), io.Discard, filepath.Join(upper, "missing"), nil); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("missing upper: %v", err)
	}
}

// TestDiffOverlayUpperMetacopy reads the data of a metacopy file from the
// lower that holds it.
func TestDiffOverlayUpperMetacopy(t *testing.T) {
	upper, lower := t.TempDir(), t.TempDir()
	must(t, os.WriteFile(filepath.Join(lower, "orig"), []byte("the data"), 0o644))
	// A metacopy upper is a sparse file of the right size with no data.
	f, err := os.Create(filepath.Join(upper, "renamed"))
	must(t, err)
	must(t, errors.Join(f.Truncate(8), f.Close()))
	p := filepath.Join(upper, "renamed")
	if err := unix.Lsetxattr(p, "trusted.overlay.metacopy", nil, 0); err != nil {
		feature.Skip(t, feature.Overlay, "overlay's trusted xattrs: %v", err)
	}
	must(t, unix.Lsetxattr(p, "trusted.overlay.redirect", []byte("/orig"), 0))
	var buf bytes.Buffer
	must(t, DiffOverlayUpper(context.Background(), &buf, upper, []string{lower}))
	got, _ := readTar(t, buf.Bytes())
	sum := sha256.Sum256([]byte("the data"))
	if e := got["renamed"]; e.Sum != hex.EncodeToString(sum[:]) || e.Xattrs != "" {
		t.Errorf("renamed: %+v, want the lower's data and no overlay xattrs", e)
	}
	if err := DiffOverlayUpper(context.Background(), io.Discard, upper, nil); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("metacopy without lowers: %v", err)
	}
}
