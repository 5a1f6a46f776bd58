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
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// inputs are the ways a layer reaches Apply: each takes another path
// through the first pass (checked in place, spooled, decompressed+spooled).
var inputs = []struct {
	name string
	wrap func(t testing.TB, data []byte) io.Reader
}{
	{"seekable", func(_ testing.TB, data []byte) io.Reader { return bytes.NewReader(data) }},
	{"stream", func(_ testing.TB, data []byte) io.Reader { return io.MultiReader(bytes.NewReader(data)) }},
	{"gzip", func(t testing.TB, data []byte) io.Reader {
		return bytes.NewReader(compress(t, data, compression.Gzip))
	}},
	{"zstd", func(t testing.TB, data []byte) io.Reader {
		return io.MultiReader(bytes.NewReader(compress(t, data, compression.Zstd)))
	}},
}

// TestApplyRefuses has one case per rule. Every layer starts with a good
// entry, so the case also shows that the first pass refuses before
// anything is written: the target must be exactly as it was.
func TestApplyRefuses(t *testing.T) {
	cases := []struct {
		name    string
		opts    []Option
		entries func(s *sandbox) []entry
		refused func(s *sandbox) string
	}{
		{name: "absolute name",
			entries: func(s *sandbox) []entry { return []entry{file(s.Sentinel+"/pwned", "x")} },
			refused: func(s *sandbox) string { return s.Sentinel + "/pwned" }},
		{name: "dotdot name",
			entries: func(s *sandbox) []entry { return []entry{file("../sentinel/pwned", "x")} },
			refused: func(s *sandbox) string { return "../sentinel/pwned" }},
		{name: "dotdot after a directory",
			entries: func(s *sandbox) []entry { return []entry{file("a/../../sentinel/pwned", "x")} },
			refused: func(s *sandbox) string { return "a/../../sentinel/pwned" }},
		{name: "hardlink absolute",
			entries: func(s *sandbox) []entry { return []entry{hardlink("stolen", s.Sentinel+"/keep")} },
			refused: func(s *sandbox) string { return "stolen" }},
		{name: "hardlink escapes",
			entries: func(s *sandbox) []entry { return []entry{hardlink("stolen", "../sentinel/keep")} },
			refused: func(s *sandbox) string { return "stolen" }},
		{name: "symlink absolute",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel)} },
			refused: func(s *sandbox) string { return "a" }},
		{name: "symlink escapes",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", "../sentinel")} },
			refused: func(s *sandbox) string { return "a" }},
		{name: "symlink escapes from its directory",
			entries: func(s *sandbox) []entry {
				return []entry{dir("x/"), dir("x/y/"), symlink("x/y/a", "../../../sentinel")}
			},
			refused: func(s *sandbox) string { return "x/y/a" }},
		{name: "character device",
			entries: func(s *sandbox) []entry { return []entry{device("null", tar.TypeChar, 1, 3)} },
			refused: func(s *sandbox) string { return "null" }},
		{name: "block device",
			entries: func(s *sandbox) []entry { return []entry{device("sda", tar.TypeBlock, 8, 0)} },
			refused: func(s *sandbox) string { return "sda" }},
		{name: "write through planted absolute symlink",
			opts:    []Option{AllowAbsoluteSymlinks()},
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/pwned", "x")} },
			refused: func(s *sandbox) string { return "a/pwned" }},
		{name: "write through planted relative symlink",
			entries: func(s *sandbox) []entry { return []entry{dir("sub/"), symlink("a", "sub"), file("a/x", "x")} },
			refused: func(s *sandbox) string { return "a/x" }},
		{name: "hardlink through planted symlink",
			opts:    []Option{AllowAbsoluteSymlinks()},
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), hardlink("h", "a/keep")} },
			refused: func(s *sandbox) string { return "h" }},
		{name: "write through hardlink to planted symlink",
			opts: []Option{AllowAbsoluteSymlinks()},
			entries: func(s *sandbox) []entry {
				return []entry{symlink("a", s.Sentinel), hardlink("b", "a"), file("b/pwned", "x")}
			},
			refused: func(s *sandbox) string { return "b/pwned" }},
		{name: "whiteout through planted symlink",
			opts:    []Option{AllowAbsoluteSymlinks()},
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/.wh.keep", "")} },
			refused: func(s *sandbox) string { return "a/.wh.keep" }},
		{name: "opaque through planted symlink",
			opts:    []Option{AllowAbsoluteSymlinks()},
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/.wh..wh..opq", "")} },
			refused: func(s *sandbox) string { return "a/.wh..wh..opq" }},
		{name: "whiteout of dotdot",
			entries: func(s *sandbox) []entry { return []entry{file(".wh...", "")} },
			refused: func(s *sandbox) string { return ".wh..." }},
		{name: "unknown whiteout marker",
			entries: func(s *sandbox) []entry { return []entry{file(".wh..wh.plnk", "")} },
			refused: func(s *sandbox) string { return ".wh..wh.plnk" }},
		{name: "root replaced by a file",
			entries: func(s *sandbox) []entry { return []entry{file(".", "")} },
			refused: func(s *sandbox) string { return "." }},
		{name: "unsupported type",
			entries: func(s *sandbox) []entry { return []entry{{Name: "cont", Type: tar.TypeCont, Mode: 0o644}} },
			refused: func(s *sandbox) string { return "cont" }},
	}
	for _, c := range cases {
		for _, in := range inputs {
			t.Run(c.name+"/"+in.name, func(t *testing.T) {
				s := newSandbox(t)
				before := snapshot(t, s.Root)
				data := buildTar(t, append([]entry{file("ok.txt", "good")}, c.entries(s)...)...)
				_, err := Apply(context.Background(), s.Root, in.wrap(t, data), c.opts...)
				s.checkSentinel(t)
				if err := sameSnapshot(before, snapshot(t, s.Root)); err != nil {
					t.Errorf("a refused layer changed the target: %v", err)
				}
				checkRefused(t, err, c.refused(s))
			})
		}
	}
}

// TestApplyAllows checks the options relax only what they say and that
// safe look-alikes of the refused cases pass.
func TestApplyAllows(t *testing.T) {
	s := newSandbox(t)
	data := buildTar(t,
		dir("etc/"),
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		dir("dev/"),
		device("dev/null", tar.TypeChar, 1, 3),
		dir("x/"), dir("x/y/"),
		symlink("x/y/up", "../../z"), // climbs to the root, not out of it
		file("a/../b", "b"),          // ".." that stays inside
		dir("sub/"),
		symlink("a", "sub"),
		dir("a/"), // replaces the symlink, so writing below it is fine
		file("a/x", "x"),
	)
	_, err := Apply(context.Background(), s.Root, bytes.NewReader(data))
	checkRefused(t, err, "etc/localtime")

	st, err := Apply(context.Background(), s.Root, bytes.NewReader(data), AllowAbsoluteSymlinks(), AllowDevices())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if st.Entries != 12 || st.Bytes != 2 || st.Whiteouts != 0 {
		t.Errorf("stats %+v, want 12 entries, 2 bytes, 0 whiteouts", st)
	}
	if l, err := os.Readlink(filepath.Join(s.Root, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("etc/localtime -> %q (%v)", l, err)
	}
	var stt unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.Root, "dev/null"), &stt); err != nil || stt.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(stt.Rdev) != 1 || unix.Minor(stt.Rdev) != 3 {
		t.Errorf("dev/null is not char 1:3: %+v %v", stt, err)
	}
	for _, p := range []string{"b", "a/x"} {
		if fi, err := os.Lstat(filepath.Join(s.Root, p)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v", p, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(s.Root, "a")); err != nil || !fi.IsDir() {
		t.Errorf("a should be a directory: %v", err)
	}
	s.checkSentinel(t)
}

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
			if st != (Stats{Entries: 30, Bytes: 20000}) {
				t.Errorf("stats %+v, want 30 entries and 20000 bytes", st)
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
	if st, err := Apply(context.Background(), root, bytes.NewReader(nil)); err != nil || st != (Stats{}) {
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

// TestValidatorTracksPlantedSymlinks: a symlink stops blocking writes
// below its name once a later entry removes or replaces it, and only then.
func TestValidatorTracksPlantedSymlinks(t *testing.T) {
	steps := []struct {
		e  entry
		ok bool
	}{
		{dir("d/"), true},
		{symlink("d/l", "../t"), true},
		{symlink("d/m", "../t"), true},
		{file("d/l/x", ""), false},
		{file(".wh.d", ""), true}, // removes d with both symlinks
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
	v := newValidator(options{})
	for i, s := range steps {
		hdr := &tar.Header{Name: s.e.Name, Typeflag: s.e.Type, Linkname: s.e.Link}
		if err := v.check(hdr); (err == nil) != s.ok {
			t.Errorf("step %d (%s): error %v, want ok=%v", i, s.e.Name, err, s.ok)
		}
	}
	if len(v.planted) != 0 || len(v.below) != 0 {
		t.Errorf("bookkeeping left %v / %v", v.planted, v.below)
	}
}
