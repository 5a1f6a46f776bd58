package daemon

import (
	"archive/tar"
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
)

type entry struct {
	name, link string
	typ        byte
	body       string
}

func mkTar(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// fakeRootfs is a container rootfs with links that point at host on the
// host: /abs -> host, /rel -> ../../../..host, and /etc/passwd.
func fakeRootfs(t *testing.T) (rootfs, host string) {
	t.Helper()
	rootfs, host = t.TempDir(), t.TempDir()
	for _, d := range []string{"etc", "tmp"} {
		if err := os.Mkdir(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": host, "rel": strings.Repeat("../", 10) + host, "etclink": "/etc"} {
		if err := os.Symlink(target, filepath.Join(rootfs, name)); err != nil {
			t.Fatal(err)
		}
	}
	return rootfs, host
}

func extractTo(t *testing.T, rootfs, dir string, data []byte, o extractOptions) error {
	t.Helper()
	if err := checkArchive(bytes.NewReader(data)); err != nil {
		return err
	}
	root, err := openInRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.close()
	fd, err := root.openat2(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	dst := &inRoot{fd: fd}
	defer dst.close()
	return extract(context.Background(), dst, bytes.NewReader(data), o)
}

func TestExtractStaysInTheRootfs(t *testing.T) {
	rootfs, host := fakeRootfs(t)
	file := entry{name: "pwned", typ: tar.TypeReg, body: "x"}
	// The links lead to rootfs/<host path>, which does not exist there.
	for _, dir := range []string{"/abs", "/rel", "/abs/", "/../../" + host} {
		if err := extractTo(t, rootfs, dir, mkTar(t, file), extractOptions{}); !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("extract into %s: %v, want ErrNotFound", dir, err)
		}
	}
	// Once the container has the directory, the link lands there.
	if err := os.MkdirAll(filepath.Join(rootfs, host), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := extractTo(t, rootfs, "/abs", mkTar(t, file), extractOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rootfs, host, "pwned")); err != nil {
		t.Fatalf("the file is not in the rootfs: %v", err)
	}
	// A link in the archive stays inside the directory extracted to.
	err := extractTo(t, rootfs, "/tmp", mkTar(t, entry{name: "l", typ: tar.TypeSymlink, link: "/etc"},
		entry{name: "l/passwd", typ: tar.TypeReg, body: "owned"}), extractOptions{})
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("extract through an archive's link: %v, want ErrNotFound (tmp/etc does not exist)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/passwd")); string(b) != "root:x:0:0\n" {
		t.Fatalf("the archive's link wrote the container's /etc/passwd: %q", b)
	}
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("written on the host: %v", entries)
	}
}

func TestCheckArchiveRefuses(t *testing.T) {
	for _, e := range []entry{
		{name: "../x", typ: tar.TypeReg}, {name: "/abs", typ: tar.TypeReg}, {name: "a/../../x", typ: tar.TypeReg},
		{name: "hl", typ: tar.TypeLink, link: "../../etc/shadow"}, {name: "dev", typ: tar.TypeChar},
	} {
		data := mkTar(t, entry{name: "fine", typ: tar.TypeReg, body: "x"}, e)
		if err := checkArchive(bytes.NewReader(data)); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%+v: %v, want ErrInvalidArgument", e, err)
		}
	}
	if err := checkArchive(strings.NewReader("not a tar, not even close, not at all")); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("garbage: %v", err)
	}
}

func TestExtractOverwrite(t *testing.T) {
	rootfs, _ := fakeRootfs(t)
	dirOverFile := mkTar(t, entry{name: "passwd", typ: tar.TypeDir})
	if err := extractTo(t, rootfs, "/etc", dirOverFile, extractOptions{noOverwriteDirNonDir: true}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("a directory over a file with noOverwriteDirNonDir: %v", err)
	}
	fileOverDir := mkTar(t, entry{name: "etc", typ: tar.TypeReg, body: "x"})
	if err := extractTo(t, rootfs, "/", fileOverDir, extractOptions{}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("a file over a full directory: %v", err)
	}
	// A file replaces a file, a link to it is made, a directory merges.
	data := mkTar(t, entry{name: "etc/", typ: tar.TypeDir}, entry{name: "etc/passwd", typ: tar.TypeReg, body: "new\n"},
		entry{name: "etc/hard", typ: tar.TypeLink, link: "etc/passwd"}, entry{name: "etc/sym", typ: tar.TypeSymlink, link: "passwd"})
	if err := extractTo(t, rootfs, "/", data, extractOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"etc/passwd", "etc/hard", "etc/sym"} {
		if b, err := os.ReadFile(filepath.Join(rootfs, n)); err != nil || string(b) != "new\n" {
			t.Errorf("%s: %q %v", n, b, err)
		}
	}
}

func TestTarWriterAndLookup(t *testing.T) {
	rootfs, _ := fakeRootfs(t)
	if err := os.Link(filepath.Join(rootfs, "etc/passwd"), filepath.Join(rootfs, "etc/passwd2")); err != nil {
		t.Fatal(err)
	}
	root, err := openInRoot(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer root.close()
	// A final symlink is archived as a link; with "/" it is followed.
	e, done, err := root.lookup("/etclink")
	if err != nil {
		t.Fatal(err)
	}
	st := pathStat(root, rootfs, "/etclink", e)
	done()
	if st.Name != "etclink" || st.Mode&os.ModeSymlink == 0 || st.LinkTarget != "/etc" {
		t.Fatalf("stat /etclink: %+v", st)
	}
	e, done, err = root.lookup("/etclink/")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	tw := newTarWriter(context.Background(), &b)
	if err := errors.Join(tw.add(e.dir, e.base, "etc", &e.st), tw.close()); err != nil {
		t.Fatal(err)
	}
	done()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&b)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if len(got) != 3 || got["etc/"] == nil || got["etc/passwd"] == nil || got["etc/passwd2"].Typeflag != tar.TypeLink ||
		got["etc/passwd2"].Linkname != "etc/passwd" {
		t.Fatalf("tar of /etclink/: %v", got)
	}
	if _, _, err := root.lookup("/nosuch/x"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("lookup of a missing path: %v", err)
	}
	if _, _, err := root.lookup("/../../../etc/passwd"); err != nil {
		t.Fatalf("lookup climbing above the root stays in it: %v", err)
	}
}
