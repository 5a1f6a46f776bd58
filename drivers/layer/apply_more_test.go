package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// TestApplyConfinesExistingSymlinks: symlinks already in the snapshot (from
// parent layers) may point anywhere; writing below them lands inside the
// target, and whiteouts and hardlinks act on the link, not its target.
func TestApplyConfinesExistingSymlinks(t *testing.T) {
	s := newSandbox(t)
	must(t, os.Symlink(s.Sentinel, filepath.Join(s.Root, "lnk")))
	must(t, os.Symlink("../sentinel", filepath.Join(s.Root, "up")))
	must(t, os.Symlink(filepath.Join(s.Sentinel, "keep"), filepath.Join(s.Root, "keeplink")))
	data := buildTar(t,
		file("lnk/pwned", "x"),
		file("up/pwned2", "x"),
		hardlink("hl", "keeplink"),
		file(".wh.up", ""),
		file("keeplink", "replaced, not written through"),
	)
	if _, err := Apply(context.Background(), s.Root, bytes.NewReader(data)); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	s.checkSentinel(t)
	for _, p := range []string{filepath.Join(s.Sentinel, "pwned"), "sentinel/pwned2"} {
		if _, err := os.Lstat(filepath.Join(s.Root, p)); err != nil {
			t.Errorf("write below an existing symlink should land in the target at %s: %v", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(s.Root, "hl")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("hl should be a link to the symlink itself: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root, "up")); !os.IsNotExist(err) {
		t.Errorf("the whiteout should remove the symlink up: %v", err)
	}
}

// TestApplyInputs applies the same generated layer through every input
// path and checks stats and results agree, and that no spool is left.
func TestApplyInputs(t *testing.T) {
	spec := Spec{Files: 20, FileSize: 1000, Dirs: 5, Symlinks: 3, Hardlinks: 2}
	var layer bytes.Buffer
	must(t, Generate(&layer, 7, spec))
	var want map[string]node
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			root, spool := t.TempDir(), t.TempDir()
			st, err := Apply(context.Background(), root, in.wrap(t, layer.Bytes()), WithTempDir(spool))
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if st != (Stats{Entries: 30, Bytes: 20000, DiffID: digest.FromBytes(layer.Bytes())}) {
				t.Errorf("stats %+v, want 30 entries, 20000 bytes and the DiffID of the uncompressed layer", st)
			}
			got := snapshot(t, root)
			delete(got, ".") // the temp dir's own mode
			if want == nil {
				want = got
			} else if err := sameSnapshot(want, got); err != nil {
				t.Errorf("differs from the %s result: %v", inputs[0].name, err)
			}
			if left, _ := os.ReadDir(spool); len(left) != 0 {
				t.Errorf("spool left behind: %v", left)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := Apply(context.Background(), filepath.Join(root, "missing"), bytes.NewReader(nil)); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("missing target: %v", err)
	}
	garbage := bytes.Repeat([]byte("not a tar "), 200)
	if _, err := Apply(context.Background(), root, bytes.NewReader(garbage)); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("garbage layer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Apply(ctx, root, bytes.NewReader(buildTar(t, file("a", "a")))); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	empty := buildTar(t)
	if st, err := Apply(context.Background(), root, bytes.NewReader(empty)); err != nil || st != (Stats{DiffID: digest.FromBytes(empty)}) {
		t.Errorf("empty layer: %+v %v", st, err)
	}
}

// whiteoutLayer deletes a/gone and makes d opaque with one new file.
func whiteoutLayer(t *testing.T) []byte {
	return buildTar(t, dir("a/"), file("a/.wh.gone", ""), dir("d/"), file("d/.wh..wh..opq", ""), file("d/new", "new"))
}

func whiteoutLower(t *testing.T, root string) {
	for _, d := range []string{"a", "d/y"} {
		must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	for _, f := range []string{"a/keep", "a/gone", "d/x", "d/y/z"} {
		must(t, os.WriteFile(filepath.Join(root, f), []byte(f), 0o644))
	}
}

func checkWhiteoutResult(t *testing.T, root string, st Stats) {
	t.Helper()
	if st.Whiteouts != 2 || st.Entries != 5 {
		t.Errorf("stats %+v, want 5 entries of which 2 whiteouts", st)
	}
	entries := func(d string) []string {
		des, err := os.ReadDir(filepath.Join(root, d))
		must(t, err)
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		return names
	}
	if got := entries("a"); len(got) != 1 || got[0] != "keep" {
		t.Errorf("a holds %v, want [keep]", got)
	}
	if got := entries("d"); len(got) != 1 || got[0] != "new" {
		t.Errorf("d holds %v, want [new]", got)
	}
}

func TestApplyWhiteoutsPlainDir(t *testing.T) {
	root := t.TempDir()
	whiteoutLower(t, root)
	st, err := Apply(context.Background(), root, bytes.NewReader(whiteoutLayer(t)))
	must(t, err)
	checkWhiteoutResult(t, root, st)
}

// TestApplyLiteralNames: with LiteralNames a ".wh." entry is an ordinary
// file (a build context), deleting nothing; without it the same tar
// deletes the file it names.
func TestApplyLiteralNames(t *testing.T) {
	data := buildTar(t, file(".wh.keep", "a file"), dir("d"), file("d/.wh..wh..opq", "x"))
	for _, literal := range []bool{true, false} {
		root := t.TempDir()
		must(t, os.WriteFile(filepath.Join(root, "keep"), []byte("lower"), 0o644))
		must(t, os.Mkdir(filepath.Join(root, "d"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "d", "lower"), nil, 0o644))
		var opts []Option
		if literal {
			opts = append(opts, LiteralNames())
		}
		st, err := Apply(context.Background(), root, bytes.NewReader(data), opts...)
		must(t, err)
		_, keepErr := os.Stat(filepath.Join(root, "keep"))
		_, lowerErr := os.Stat(filepath.Join(root, "d", "lower"))
		b, markerErr := os.ReadFile(filepath.Join(root, ".wh.keep"))
		if literal && (keepErr != nil || lowerErr != nil || markerErr != nil || string(b) != "a file" || st.Whiteouts != 0) {
			t.Errorf("LiteralNames: keep %v, d/lower %v, .wh.keep %q %v, %d whiteouts", keepErr, lowerErr, b, markerErr, st.Whiteouts)
		}
		if !literal && (!os.IsNotExist(keepErr) || !os.IsNotExist(lowerErr) || !os.IsNotExist(markerErr)) {
			t.Errorf("a layer: keep %v, d/lower %v, .wh.keep %v; want all deleted or absent", keepErr, lowerErr, markerErr)
		}
	}
}

// TestApplyWhiteoutsOverlay applies to a mounted overlay: the deletions in
// the merged view become overlay whiteouts in the upper directory.
func TestApplyWhiteoutsOverlay(t *testing.T) {
	lfs := loopfs.ForTest(t, "ext4", 0)
	lower := filepath.Join(lfs.Dir, "lower")
	whiteoutLower(t, lower)
	o := newOverlay(t, lfs, "ovl", lower)
	st, err := Apply(context.Background(), o.Merged, bytes.NewReader(whiteoutLayer(t)))
	must(t, err)
	checkWhiteoutResult(t, o.Merged, st)
	var stt unix.Stat_t
	if err := unix.Lstat(filepath.Join(o.Upper, "a/gone"), &stt); err != nil || stt.Mode&unix.S_IFMT != unix.S_IFCHR || stt.Rdev != 0 {
		t.Errorf("upper a/gone should be an overlay whiteout (char 0/0): %+v %v", stt, err)
	}
	if _, err := os.Stat(filepath.Join(lower, "a/gone")); err != nil {
		t.Errorf("the lower must keep a/gone: %v", err)
	}
}

// TestModelTracksPlantedSymlinks: a symlink stops blocking writes below
// its name once a later entry replaces it, and only then.
func TestModelTracksPlantedSymlinks(t *testing.T) {
	steps := []struct {
		e  entry
		ok bool
	}{
		{dir("d/"), true},
		{symlink("d/l", "../t"), true},
		{symlink("d/m", "../t"), true},
		{file("d/l/x", ""), false},
		{file("d", "a file now"), true}, // replaces d with both symlinks
		{dir("d/"), true},
		{dir("d/l/"), true},
		{file("d/l/x", ""), true},
		{file("d/m/x", ""), true},
		{symlink("s", "d"), true},
		{file("s", "now a file"), true}, // replaced: no longer a symlink
		{dir("s/"), true},
		{file("s/x", ""), true},
		{symlink("k", "d"), true},
		{file("k/.wh..wh..opq", ""), false},
		{dir("k/"), true},
		{file("k/.wh..wh..opq", ""), true},
	}
	m := newModel(t.TempDir(), options{})
	for i, s := range steps {
		hdr := &tar.Header{Name: s.e.Name, Typeflag: s.e.Type, Linkname: s.e.Link}
		if err := m.check(hdr); (err == nil) != s.ok {
			t.Errorf("step %d (%s): error %v, want ok=%v", i, s.e.Name, err, s.ok)
		}
	}
	for p, k := range m.layer {
		if k == isLink {
			t.Errorf("symlink %s still recorded", p)
		}
	}
}

// TestDiffDigests: Diff returns the DiffID of the uncompressed tar and the
// digest and size of the bytes it wrote, compressed or not, and Apply of
// what it wrote, with that DiffID expected, reproduces the tree.
func TestDiffDigests(t *testing.T) {
	src := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(src, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("layerlab\n"), 0o644))
	must(t, os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(src, "etc/localtime")))
	var plain bytes.Buffer
	d0, err := Diff(context.Background(), &plain, "", src)
	must(t, err)
	if d0.DiffID != digest.FromBytes(plain.Bytes()) || d0.Digest != d0.DiffID || d0.Size != int64(plain.Len()) {
		t.Errorf("uncompressed: %+v, want DiffID = Digest = %s and size %d", d0, digest.FromBytes(plain.Bytes()), plain.Len())
	}
	for _, c := range []compression.Compression{compression.Gzip, compression.Zstd} {
		var out bytes.Buffer
		d, err := Diff(context.Background(), &out, "", src, WithCompression(c))
		must(t, err)
		if d.DiffID != d0.DiffID || d.Digest != digest.FromBytes(out.Bytes()) || d.Size != int64(out.Len()) || d.Digest == d.DiffID {
			t.Errorf("compression %v: %+v, want DiffID %s and the digest of the %d bytes written", c, d, d0.DiffID, out.Len())
		}
		dst := t.TempDir()
		st, err := Apply(context.Background(), dst, bytes.NewReader(out.Bytes()), WithDiffID(d.DiffID))
		if err != nil || st.DiffID != d.DiffID {
			t.Fatalf("apply of the diff: %+v %v", st, err)
		}
		var again bytes.Buffer
		if d2, err := Diff(context.Background(), &again, "", dst); err != nil || d2.DiffID != d0.DiffID {
			t.Errorf("round trip: %+v %v, want DiffID %s", d2, err, d0.DiffID)
		}
	}
}

// filterFunc is an io.WriteCloser made of two funcs.
type filterFunc struct {
	write func([]byte) (int, error)
	close func() error
}

func (f filterFunc) Write(p []byte) (int, error) { return f.write(p) }
func (f filterFunc) Close() error                { return f.close() }

// TestDiffTarFilter: the layer's digests are those of what the filter
// passed on, and a filter that fails fails the diff.
func TestDiffTarFilter(t *testing.T) {
	upper := t.TempDir()
	must(t, os.WriteFile(filepath.Join(upper, "a"), []byte("a"), 0o644))
	var seen int
	var out bytes.Buffer
	d, err := Diff(context.Background(), &out, "", upper, WithTarFilter(func(w io.Writer) io.WriteCloser {
		return filterFunc{write: func(p []byte) (int, error) { seen += len(p); return w.Write(p) }, close: func() error { return nil }}
	}))
	must(t, err)
	if seen == 0 || d.DiffID != digest.FromBytes(out.Bytes()) || d.Size != int64(out.Len()) {
		t.Errorf("through a filter: %d bytes seen, %+v for %d bytes written", seen, d, out.Len())
	}
	broken := errors.New("filter broke")
	_, err = Diff(context.Background(), io.Discard, "", upper, WithTarFilter(func(w io.Writer) io.WriteCloser {
		return filterFunc{write: w.Write, close: func() error { return broken }}
	}))
	if !errors.Is(err, broken) {
		t.Errorf("a failing filter: %v", err)
	}
}
