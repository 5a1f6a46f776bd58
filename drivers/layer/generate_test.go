package layer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
)

func generated(t *testing.T, seed int64, spec Spec) []byte {
	t.Helper()
	var buf bytes.Buffer
	must(t, Generate(&buf, seed, spec))
	return buf.Bytes()
}

// TestGenerateDeterministic: same seed and spec, same bytes (also for the
// compressed forms, and whatever GOMAXPROCS the zstd encoder sees); another
// seed, other bytes.
func TestGenerateDeterministic(t *testing.T) {
	spec := Spec{Files: 50, FileSize: 3000, Dirs: 9, Symlinks: 5, Hardlinks: 5,
		Whiteouts: []string{"old/file", "gone"}, Opaque: []string{"d0000/d0001"}}
	for name, c := range map[string]compression.Compression{"plain": compression.Uncompressed, "gzip": compression.Gzip, "zstd": compression.Zstd} {
		spec.Compression = c
		t.Run(name, func(t *testing.T) {
			a := sha256.Sum256(generated(t, 42, spec))
			prev := runtime.GOMAXPROCS(1)
			b := sha256.Sum256(generated(t, 42, spec))
			runtime.GOMAXPROCS(prev)
			if a != b {
				t.Errorf("two runs with seed 42 differ: %x != %x", a, b)
			}
			if other := sha256.Sum256(generated(t, 43, spec)); other == a {
				t.Errorf("seeds 42 and 43 give the same layer")
			}
		})
	}
}

// TestGenerateApplies checks the generated layer is what Spec says and
// passes Apply's checks.
func TestGenerateApplies(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"old", "d0000/d0001"} {
		must(t, os.MkdirAll(filepath.Join(root, p), 0o755))
	}
	for _, p := range []string{"old/file", "old/stays", "gone", "d0000/d0001/lower"} {
		must(t, os.WriteFile(filepath.Join(root, p), []byte(p), 0o644))
	}
	spec := Spec{Files: 40, FileSize: 5000, Dirs: 9, Symlinks: 4, Hardlinks: 3,
		Whiteouts: []string{"old/file", "gone"}, Opaque: []string{"d0000/d0001"}, Compression: compression.Gzip}
	layer := generated(t, 1, spec)
	if plain := generated(t, 1, Spec{Files: 40, FileSize: 5000, Dirs: 9}); len(layer) > len(plain)*2/3 {
		t.Errorf("gzip layer is %d bytes, the plain one %d: content should compress", len(layer), len(plain))
	}
	st, err := Apply(context.Background(), root, bytes.NewReader(layer))
	must(t, err)
	if want := (Stats{Entries: 9 + 40 + 4 + 3 + 3, Whiteouts: 3, Bytes: 40 * 5000, DiffID: digest.FromBytes(generated(t, 1, uncompressed(spec)))}); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	var files, links, hard int
	must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		switch {
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			links++
			if _, err := os.Stat(p); err != nil {
				t.Errorf("symlink %s dangles: %v", p, err)
			}
		case fi.Mode().IsRegular() && fi.Size() == 5000:
			files++
			if filepath.Base(p)[0] == 'h' {
				hard++
			}
		}
		return nil
	}))
	if files != 43 || hard != 3 || links != 4 {
		t.Errorf("%d files (%d hardlinks), %d symlinks; want 43 (3), 4", files, hard, links)
	}
	for p, want := range map[string]bool{"old/file": false, "gone": false, "old/stays": true, "d0000/d0001/lower": false} {
		if _, err := os.Lstat(filepath.Join(root, p)); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", p, err == nil, want)
		}
	}
}

func uncompressed(s Spec) Spec {
	s.Compression = compression.Uncompressed
	return s
}

func TestGenerateRefusesBadSpecs(t *testing.T) {
	for _, spec := range []Spec{
		{Files: -1},
		{Symlinks: 1},
		{Whiteouts: []string{"../escape"}},
		{Whiteouts: []string{"/abs"}},
		{Opaque: []string{"."}},
		{Compression: compression.Unknown},
	} {
		var buf bytes.Buffer
		if err := Generate(&buf, 1, spec); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("spec %+v: %v, want ErrInvalidArgument", spec, err)
		}
	}
}
