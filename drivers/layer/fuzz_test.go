package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzApply feeds arbitrary bytes to Apply. Whatever they are: no panic,
// nothing next to the target changes, a refusal that does not say
// ErrUnusable leaves the target exactly as it was, and an accepted layer
// leaves no device node and no relative symlink that climbs out of the
// root. The seeds are the hostile cases of TestApplyRefusesHostileLayers,
// a generated layer, and testdata/fuzz/FuzzApply (sparse, truncated and
// compressed layers). `make test` runs it for a few seconds.
func FuzzApply(f *testing.F) {
	s := &sandbox{Sentinel: "/nonexistent/sentinel"}
	for _, c := range hostileCases() {
		if c.entries != nil {
			f.Add(buildTar(f, append([]entry{dir("ok/"), file("ok/a", "a")}, c.entries(s)...)...))
		}
	}
	var good bytes.Buffer
	must(f, Generate(&good, 1, Spec{Files: 4, FileSize: 100, Dirs: 3, Symlinks: 2, Hardlinks: 1, Whiteouts: []string{"existing"}, Opaque: []string{"d0000"}}))
	f.Add(good.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		before := snapshot(t, s.Root)
		_, err := Apply(context.Background(), s.Root, bytes.NewReader(data), WithBudget(Budget{Bytes: 4 << 20, Inodes: 4096}))
		s.checkSentinel(t)
		if err != nil && !errors.Is(err, ErrUnusable) {
			if err := sameSnapshot(before, snapshot(t, s.Root)); err != nil {
				t.Errorf("refused (%v) yet the target changed: %v", err, err)
			}
		}
		if err == nil {
			checkConfined(t, s.Root)
		}
	})
}

// checkConfined fails t when root holds a device node or a relative
// symlink that, resolved from where it lies, climbs above root.
func checkConfined(t *testing.T, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeDevice != 0:
			t.Errorf("device node %s was created", rel)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if !path.IsAbs(target) && escapes(path.Join(path.Dir(rel), target)) {
				t.Errorf("symlink %s -> %s climbs out of the root", rel, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// FuzzEntryName checks the name and link-target rules: an accepted name
// is local once cleaned, an accepted relative symlink target stays inside
// the root from any directory deep enough for its leading "..", and an
// accepted hardlink target is local and not the entry itself.
func FuzzEntryName(f *testing.F) {
	for _, seed := range [][2]string{
		{"a/b", "c"}, {"../x", "../../y"}, {"/abs", "/etc/localtime"}, {"a/../../b", "a/../.."},
		{".wh..wh..opq", "x/../y"}, {"./.wh...", "..."}, {"a\x00b", "\x00"}, {"", ""}, {".", "./../."},
		{"c0/c1/up", "c0/c1/up/../../../tmp/x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, name, target string) {
		clean, err := checkName(name)
		if err == nil && clean != "." && !filepath.IsLocal(clean) {
			t.Errorf("name %q accepted as %q, which is not local", name, clean)
		}
		if err == nil {
			if e := checkHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir}, options{}); e != nil && !errors.As(e, new(*EntryError)) {
				t.Errorf("checkHeader(%q): %v is not an *EntryError", name, e)
			}
		}
		if checkSymlinkForm(name, target, options{}) == nil && !path.IsAbs(target) {
			from := strings.Repeat("d/", climb(target))
			if escapes(path.Join(from, target)) {
				t.Errorf("symlink target %q accepted but climbs out from %q", target, from)
			}
		}
		if checkHardlinkForm(name, target) == nil {
			tc := path.Clean(target)
			if !filepath.IsLocal(tc) || tc == path.Clean(name) {
				t.Errorf("hardlink target %q of %q accepted", target, name)
			}
		}
	})
}
