package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestApplyCopy lands staged sources in a root as COPY does: a file to a
// file path renamed, into an existing directory kept by name, --chown
// by names from the root's /etc/passwd and /etc/group, and a symlink of
// the root that points out resolved inside the root, never written
// through.
func TestApplyCopy(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "COPY --chown sets owners")
	}
	ctx := context.Background()
	src := tree(t, "a.txt", "d/b.txt")
	outside := t.TempDir()
	root := tree(t, "etc/passwd", "etc/group", "bin/sh")
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("app:x:1234:2345::/home/app:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte("grp:x:3456:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	s := &session{tmp: t.TempDir()}
	for _, tc := range []struct {
		srcs  []string
		dest  string
		chown string
		want  string // path under root
		uid   uint32
		gid   uint32
	}{
		{[]string{"a.txt"}, "/renamed.txt", "", "renamed.txt", 0, 0},
		{[]string{"a.txt"}, "/bin", "app", "bin/a.txt", 1234, 2345},
		{[]string{"d"}, "/copied/", "app:grp", "copied/b.txt", 1234, 3456},
		// escape -> OUTSIDE is followed inside the root: root/OUTSIDE/x.txt.
		{[]string{"a.txt"}, "/escape/x.txt", "1:2", filepath.Join(outside, "x.txt"), 1, 2},
	} {
		srcs, err := resolve(src, tc.srcs, false)
		if err != nil {
			t.Fatal(err)
		}
		staged, _, err := s.stageTar(srcs, false)
		if err != nil {
			t.Fatal(err)
		}
		c := copySpec{chown: tc.chown, text: "COPY"}
		c.DestPath = tc.dest
		if err := s.apply(ctx, root, c, srcs, staged, tc.dest); err != nil {
			t.Fatalf("COPY %v %s: %v", tc.srcs, tc.dest, err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, tc.want), &st); err != nil {
			t.Fatalf("COPY %v %s: %s: %v", tc.srcs, tc.dest, tc.want, err)
		}
		if st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("COPY --chown=%s: %s owned by %d:%d, want %d:%d", tc.chown, tc.want, st.Uid, st.Gid, tc.uid, tc.gid)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("COPY wrote through a symlink out of the root: %v", entries)
	}
	srcs, _ := resolve(src, []string{"a.txt"}, false)
	staged, _, _ := s.stageTar(srcs, false)
	c := copySpec{chown: "nosuchuser", text: "COPY"}
	if err := s.apply(ctx, root, c, srcs, staged, "/x"); err == nil {
		t.Error("--chown of an unknown user was accepted")
	}
}

// TestAddArchives: ADD extracts a local tar plain or compressed as dockerd
// does (gzip, bzip2, xz, zstd); a compressed file that is no tar, and a
// plain file, are copied as they are.
func TestAddArchives(t *testing.T) {
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	if err := tw.WriteHeader(&tar.Header{Name: "inner/a.txt", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	compress := map[string]func(w io.Writer) (io.WriteCloser, error){
		"tar":    func(w io.Writer) (io.WriteCloser, error) { return nopCloser{w}, nil },
		"tar.gz": func(w io.Writer) (io.WriteCloser, error) { return gzip.NewWriter(w), nil },
		"tar.xz": func(w io.Writer) (io.WriteCloser, error) { return xz.NewWriter(w) },
		"tar.zst": func(w io.Writer) (io.WriteCloser, error) {
			return zstd.NewWriter(w)
		},
	}
	dir := t.TempDir()
	for ext, mk := range compress {
		var buf bytes.Buffer
		w, err := mk(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(plain.Bytes()); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "a."+ext), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// bzip2 has no writer in Go's library: the bzip2 tool (make setup).
	if err := os.WriteFile(filepath.Join(dir, "a.tar.bz2.in"), plain.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "bzip2 -c a.tar.bz2.in > a.tar.bz2 && echo hello > text.txt && xz -c text.txt > text.xz")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := &session{tmp: t.TempDir()}
	for _, name := range []string{"a.tar", "a.tar.gz", "a.tar.bz2", "a.tar.xz", "a.tar.zst"} {
		p := filepath.Join(dir, name)
		if !isArchive(p) {
			t.Errorf("%s: not taken for an archive", name)
			continue
		}
		root := t.TempDir()
		if err := applyFile(context.Background(), root, p, s.tmp); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(root, "inner/a.txt")); err != nil || string(b) != "hi" {
			t.Errorf("%s: inner/a.txt %q, %v", name, b, err)
		}
	}
	for _, name := range []string{"text.txt", "text.xz"} {
		if isArchive(filepath.Join(dir, name)) {
			t.Errorf("%s taken for a tar archive", name)
		}
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
