package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
)

// inputs are the ways a layer reaches Apply: each takes another path
// through the two passes (checked in place; in place from a file, whose
// files the pool writes; spooled; decompressed and spooled).
var inputs = []struct {
	name string
	wrap func(t testing.TB, data []byte) io.Reader
}{
	{"seekable", func(_ testing.TB, data []byte) io.Reader { return bytes.NewReader(data) }},
	{"file", layerFile},
	{"stream", func(_ testing.TB, data []byte) io.Reader { return io.MultiReader(bytes.NewReader(data)) }},
	{"gzip", func(t testing.TB, data []byte) io.Reader {
		return bytes.NewReader(compress(t, data, compression.Gzip))
	}},
	{"zstd", func(t testing.TB, data []byte) io.Reader {
		return io.MultiReader(bytes.NewReader(compress(t, data, compression.Zstd)))
	}},
}

// hostile is one layer Apply must refuse.
type hostile struct {
	name    string
	opts    func(s *sandbox, layer []byte) []Option
	entries func(s *sandbox) []entry
	// mangle turns the tar into the bytes given to Apply; raw ones are
	// given as they are (not recompressed per input).
	mangle func(t *testing.T, layer []byte) []byte
	raw    bool
	// entry is the entry an *EntryError must name; "" for an error about
	// the whole layer.
	entry func(s *sandbox) string
	want  string // in the message: the rule
}

func named(n string) func(*sandbox) string { return func(*sandbox) string { return n } }

// deep is c0/c1/.../c19: the directories of the symlink chain escape.
func deep() (string, []entry) {
	var es []entry
	p := ""
	for i := 0; i < 20; i++ {
		p += "c" + string(rune('a'+i)) + "/"
		es = append(es, dir(p))
	}
	return strings.TrimSuffix(p, "/"), es
}

func hostileCases() []hostile {
	keep := func(s *sandbox) string { return s.Sentinel + "/keep" }
	abs := func(s *sandbox, _ []byte) []Option { return []Option{AllowAbsoluteSymlinks(false)} }
	budget := func(b Budget) func(*sandbox, []byte) []Option {
		return func(*sandbox, []byte) []Option { return []Option{WithBudget(b)} }
	}
	return []hostile{
		{name: "absolute name", entries: func(s *sandbox) []entry { return []entry{file(s.Sentinel+"/pwned", "x")} },
			entry: func(s *sandbox) string { return s.Sentinel + "/pwned" }, want: "entry name is absolute"},
		{name: "traversal", entries: func(*sandbox) []entry { return []entry{file("../sentinel/pwned", "x")} },
			entry: named("../sentinel/pwned"), want: "climbs out of the root with .."},
		{name: "traversal after a directory", entries: func(*sandbox) []entry { return []entry{file("a/../../sentinel/pwned", "x")} },
			entry: named("a/../../sentinel/pwned"), want: `resolves to "../sentinel/pwned"`},
		{name: "hardlink absolute", entries: func(s *sandbox) []entry { return []entry{hardlink("stolen", keep(s))} },
			entry: named("stolen"), want: `/sentinel/keep" is absolute`},
		{name: "hardlink out", entries: func(*sandbox) []entry { return []entry{hardlink("stolen", "../sentinel/keep")} },
			entry: named("stolen"), want: "climbs out of the root"},
		{name: "hardlink to a missing file", entries: func(*sandbox) []entry { return []entry{hardlink("h", "nowhere")} },
			entry: named("h"), want: "exists neither in this layer nor in the snapshot"},
		{name: "self-hardlink of the parent's file", entries: func(*sandbox) []entry { return []entry{hardlink("existing", "existing")} },
			entry: named("existing"), want: "hardlink to itself"},
		{name: "self-hardlink through ./", entries: func(*sandbox) []entry { return []entry{hardlink("./existing", "existing")} },
			entry: named("./existing"), want: "hardlink to itself"},
		{name: "hardlink to a directory", entries: func(*sandbox) []entry { return []entry{dir("d/"), hardlink("h", "d")} },
			entry: named("h"), want: "is a directory"},
		{name: "absolute symlink refused on request", opts: abs,
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel)} },
			entry:   named("a"), want: "refused by AllowAbsoluteSymlinks(false)"},
		{name: "symlink out", entries: func(*sandbox) []entry { return []entry{symlink("a", "../sentinel")} },
			entry: named("a"), want: "climbs out of the root"},
		{name: "symlink out from its directory",
			entries: func(*sandbox) []entry { return []entry{dir("x/"), dir("x/y/"), symlink("x/y/a", "../../../sentinel")} },
			entry:   named("x/y/a"), want: "2 levels deep"},
		{name: "symlink chain out", entries: func(*sandbox) []entry {
			p, es := deep()
			return append(es, symlink(p+"/up", "../../.."), symlink("s", p+"/up/../../../../sentinel/keep"))
		}, entry: named("s"), want: "has .. after a path component"},
		{name: "hardlink moving a symlink's climb out", entries: func(*sandbox) []entry {
			return []entry{dir("a/"), dir("a/b/"), symlink("a/b/l", "../../sentinel-not"), hardlink("h", "a/b/l")}
		}, entry: named("h"), want: `"../../sentinel-not" climbs out of the root: its directory "/" is 0 levels deep`},
		{name: "character device", entries: func(*sandbox) []entry { return []entry{device("null", tar.TypeChar, 1, 3)} },
			entry: named("null"), want: "character device 1:3 refused"},
		{name: "block device", entries: func(*sandbox) []entry { return []entry{device("sda", tar.TypeBlock, 8, 0)} },
			entry: named("sda"), want: "block device 8:0 refused"},
		{name: "write through a planted absolute symlink",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/pwned", "x")} },
			entry:   named("a/pwned"), want: "symlink created earlier in this layer"},
		{name: "write through a planted relative symlink",
			entries: func(*sandbox) []entry { return []entry{dir("sub/"), symlink("a", "sub"), file("a/x", "x")} },
			entry:   named("a/x"), want: "symlink created earlier in this layer"},
		{name: "hardlink through a planted symlink",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), hardlink("h", "a/keep")} },
			entry:   named("h"), want: "symlink created earlier in this layer"},
		{name: "write through a hardlink to a planted symlink",
			entries: func(s *sandbox) []entry {
				return []entry{symlink("a", s.Sentinel), hardlink("b", "a"), file("b/pwned", "x")}
			},
			entry: named("b/pwned"), want: "symlink created earlier in this layer"},
		{name: "whiteout through a planted symlink",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/.wh.keep", "")} },
			entry:   named("a/.wh.keep"), want: "symlink created earlier in this layer"},
		{name: "opaque through a planted symlink",
			entries: func(s *sandbox) []entry { return []entry{symlink("a", s.Sentinel), file("a/.wh..wh..opq", "")} },
			entry:   named("a/.wh..wh..opq"), want: "symlink created earlier in this layer"},
		{name: "whiteout escape", entries: func(*sandbox) []entry { return []entry{file(".wh...", "")} },
			entry: named(".wh..."), want: "whiteout names no file"},
		{name: "whiteout escape from a directory", entries: func(*sandbox) []entry { return []entry{file("../.wh.sentinel", "")} },
			entry: named("../.wh.sentinel"), want: `resolves to "../.wh.sentinel"`},
		{name: "unknown whiteout marker", entries: func(*sandbox) []entry { return []entry{file(".wh..wh.plnk", "")} },
			entry: named(".wh..wh.plnk"), want: "unknown whiteout marker"},
		{name: "whiteout of the layer's own directory",
			entries: func(*sandbox) []entry { return []entry{dir("a/"), file("a/f", "f"), file(".wh.a", "")} },
			entry:   named(".wh.a"), want: "an entry of this same layer"},
		{name: "file under a file of the layer", entries: func(*sandbox) []entry { return []entry{file("f", "f"), file("f/x", "x")} },
			entry: named("f/x"), want: "file created earlier in this layer"},
		{name: "file under a file of the snapshot", entries: func(*sandbox) []entry { return []entry{file("existing/x", "x")} },
			entry: named("existing/x"), want: "is a file in the snapshot"},
		{name: "bad security.capability", entries: func(*sandbox) []entry {
			e := file("ping", "x")
			e.Xattrs = map[string]string{"security.capability": "\x01\x00\x00\x02junk"}
			return []entry{e}
		}, entry: named("ping"), want: "security.capability is malformed"},
		{name: "xattr in no namespace", entries: func(*sandbox) []entry {
			e := file("f", "x")
			e.Xattrs = map[string]string{"bogus.name": "v"}
			return []entry{e}
		}, entry: named("f"), want: "in no namespace"},
		{name: "root replaced by a file", entries: func(*sandbox) []entry { return []entry{file(".", "")} },
			entry: named("."), want: "replace the root directory"},
		{name: "unsupported type", entries: func(*sandbox) []entry { return []entry{{Name: "cont", Type: tar.TypeCont, Mode: 0o644}} },
			entry: named("cont"), want: "unsupported entry type"},
		{name: "sparse expansion past the budget", raw: true, opts: budget(Budget{Bytes: 1 << 30}),
			mangle: func(t *testing.T, _ []byte) []byte { return readFile(t, "testdata/sparse-10g-gnu.tar") },
			entry:  named("big"), want: "more than the budget of 1073741824 bytes"},
		{name: "sparse (PAX) expansion past the budget", raw: true, opts: budget(Budget{Bytes: 2 << 30}),
			mangle: func(t *testing.T, _ []byte) []byte { return readFile(t, "testdata/sparse-10g-pax.tar") },
			entry:  named("big"), want: "more than the budget of 2147483648 bytes"},
		{name: "more entries than the inode budget", opts: budget(Budget{Inodes: 3}),
			entries: func(*sandbox) []entry { return []entry{file("a", ""), file("b", "")} },
			entry:   named("b"), want: "more than the budget of 3 inodes"},
		{name: "truncated at a block boundary with its DiffID",
			opts: func(_ *sandbox, layer []byte) []Option {
				return []Option{WithDiffID(digest.FromBytes(layer))}
			},
			entries: func(*sandbox) []entry { return []entry{file("b", "second"), file("c", "third")} },
			mangle:  func(t *testing.T, layer []byte) []byte { return cutAtBlock(t, layer, "c") },
			want:    "layer is truncated"},
		{name: "DiffID mismatch", opts: func(*sandbox, []byte) []Option {
			return []Option{WithDiffID(digest.FromString("another layer"))}
		}, entries: func(*sandbox) []entry { return []entry{file("b", "b")} }, want: "not the expected"},
		{name: "bzip2", raw: true, mangle: func(*testing.T, []byte) []byte { return []byte("BZh91AY&SY...") },
			want: "unsupported compression: bzip2"},
		{name: "xz", raw: true, mangle: func(*testing.T, []byte) []byte { return []byte("\xfd7zXZ\x00\x00\x04") },
			want: "unsupported compression: xz"},
		{name: "not a tar", raw: true, mangle: func(*testing.T, []byte) []byte { return bytes.Repeat([]byte("not a tar "), 200) },
			want: "not a valid tar"},
		{name: "empty", raw: true, mangle: func(*testing.T, []byte) []byte { return nil }, want: "layer is empty"},
	}
}

// TestApplyRefusesHostileLayers: every case is refused with its own
// message, before anything is written (the target is exactly as it was:
// this package's choice for what a layer's headers can tell), and nothing
// next to the target changes. Every layer starts with good entries, so the
// refusal of a late entry shows that nothing was applied before it.
func TestApplyRefusesHostileLayers(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // message (root and sentinel blanked) -> case
	for _, c := range hostileCases() {
		for _, in := range inputs {
			if c.raw && (in.name == "gzip" || in.name == "zstd") {
				continue
			}
			t.Run(c.name+"/"+in.name, func(t *testing.T) {
				s := newSandbox(t)
				before := snapshot(t, s.Root)
				var layer []byte
				if c.entries != nil {
					layer = buildTar(t, append([]entry{dir("ok/"), file("ok/a.txt", "good")}, c.entries(s)...)...)
				}
				var opts []Option
				if c.opts != nil {
					opts = c.opts(s, layer)
				}
				data := layer
				if c.mangle != nil {
					data = c.mangle(t, layer)
				}
				if c.raw {
					data = bytes.Clone(data)
				}
				_, err := Apply(context.Background(), s.Root, in.wrap(t, data), opts...)
				s.checkSentinel(t)
				if err := sameSnapshot(before, snapshot(t, s.Root)); err != nil {
					t.Errorf("a refused layer changed the target: %v", err)
				}
				entryName := ""
				if c.entry != nil {
					entryName = c.entry(s)
				}
				checkRefused(t, err, entryName, c.want)
				if err != nil && in.name == "seekable" {
					msg := strings.NewReplacer(s.Root, "ROOT", s.Sentinel, "SENTINEL").Replace(err.Error())
					mu.Lock()
					if other, dup := seen[msg]; dup {
						t.Errorf("cases %q and %q are refused with the same message %q", c.name, other, msg)
					}
					seen[msg] = c.name
					mu.Unlock()
				}
			})
		}
	}
}

// cutAtBlock returns layer cut just before the header of entry name: a
// tar that archive/tar reads as complete.
func cutAtBlock(t *testing.T, layer []byte, name string) []byte {
	t.Helper()
	for off := 0; off+blockSize <= len(layer); off += blockSize {
		hdr, err := tar.NewReader(bytes.NewReader(layer[off:])).Next()
		if err == nil && hdr.Name == name {
			return layer[:off]
		}
	}
	t.Fatalf("no header of %s in the layer", name)
	return nil
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// TestApplyNeverFollowsAbsoluteSymlinks: absolute symlinks are accepted
// by default, and nothing Apply does goes through one: an entry of the
// same name replaces the link, a hardlink to it links the link, a
// whiteout removes the link, and one of a lower layer is resolved inside
// the root.
func TestApplyNeverFollowsAbsoluteSymlinks(t *testing.T) {
	s := newSandbox(t)
	keep := filepath.Join(s.Sentinel, "keep")
	must(t, os.Symlink(s.Sentinel, filepath.Join(s.Root, "lower")))
	layer := buildTar(t,
		dir("etc/"),
		symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		symlink("k", keep),
		file("k", "replaces the link"),
		symlink("k2", keep),
		hardlink("k3", "k2"),
		file("lower/inside", "lands in the root"),
	)
	st, err := Apply(context.Background(), s.Root, bytes.NewReader(layer))
	must(t, err)
	if !strings.HasPrefix(string(st.DiffID), "sha256:") || st.DiffID != digest.FromBytes(layer) {
		t.Errorf("DiffID %s, want %s", st.DiffID, digest.FromBytes(layer))
	}
	s.checkSentinel(t)
	if l, err := os.Readlink(filepath.Join(s.Root, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("etc/localtime -> %q (%v)", l, err)
	}
	if b, err := os.ReadFile(filepath.Join(s.Root, "k")); err != nil || string(b) != "replaces the link" {
		t.Errorf("k: %q %v", b, err)
	}
	if l, err := os.Readlink(filepath.Join(s.Root, "k3")); err != nil || l != keep {
		t.Errorf("k3 should be the symlink k2 under a second name: %q %v", l, err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root, s.Sentinel, "inside")); err != nil {
		t.Errorf("an entry below a lower layer's absolute symlink must land inside the root: %v", err)
	}
	// Relative links to the root and leading ".." that fit are fine.
	ok := buildTar(t, dir("x/"), dir("x/y/"), symlink("x/y/up", "../../z"), symlink("x/self", "."), file("a/../b", "b"))
	if _, err := Apply(context.Background(), s.Root, bytes.NewReader(ok)); err != nil {
		t.Errorf("safe look-alikes refused: %v", err)
	}
}

// checkRefused checks that err refuses the layer, before writing, for the
// rule want; entry is the entry an *EntryError must name ("" for an error
// about the whole layer).
func checkRefused(t *testing.T, err error, entry, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Apply accepted the layer (want %q)", want)
	}
	if !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("error %v does not wrap ErrInvalidArgument", err)
	}
	if errors.Is(err, ErrUnusable) {
		t.Errorf("error %v says the snapshot is unusable, but the layer was refused before writing", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	var ee *EntryError
	switch {
	case entry == "":
		if errors.As(err, &ee) {
			t.Errorf("error %v blames entry %q; want an error about the whole layer", err, ee.Entry)
		}
	case !errors.As(err, &ee):
		t.Errorf("error %v is not an *EntryError", err)
	case ee.Entry != entry:
		t.Errorf("error %q names entry %q, want %q", err, ee.Entry, entry)
	}
}
