package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// FuzzParseArgs: the buildargs query never panics, and what it accepts
// has names a build can use.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{`{"A":"1"}`, `{"A":null}`, `{}`, `[]`, `{"":"x"}`, `{"A=B":"1"}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := ParseArgs(s)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("ParseArgs(%q): %v is not an invalid argument", s, err)
			}
			return
		}
		for k := range args {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				t.Fatalf("ParseArgs(%q) accepted the name %q", s, k)
			}
		}
	})
}

// FuzzDockerfile: any Dockerfile goes through BuildKit's parser and the
// builder's dispatch without a panic, ending in an image or an error
// (the in-memory backend runs no container, so RUN fails; COPY, ADD and
// WORKDIR write into its temporary directories).
func FuzzDockerfile(f *testing.F) {
	for _, s := range []string{
		"FROM busybox\nENV A=1\nCMD [\"sh\"]\n",
		"ARG X=busybox\nFROM $X AS a\nARG Y=${X:-z}\nLABEL a=$Y\nFROM a\nONBUILD ENV B=2\n",
		"FROM scratch\nEXPOSE 80/udp 1-2\nVOLUME /v\nHEALTHCHECK NONE\nSHELL [\"/bin/sh\",\"-c\"]\n",
		"FROM busybox\nWORKDIR a/../b\nUSER 1:1\nSTOPSIGNAL 9\nENTRYPOINT x\nMAINTAINER me\n",
		"# escape=`\nFROM busybox\nRUN echo `\n  hi\nCOPY a b /c/\n",
	} {
		f.Add(s, "")
	}
	f.Add("FROM busybox AS a\nFROM a AS b\n", "a")
	f.Fuzz(func(t *testing.T, dockerfile, target string) {
		if len(dockerfile) > 1<<16 {
			return
		}
		m := newMem(t)
		var out recorder
		ctx := contextTar(t, map[string]string{"Dockerfile": dockerfile})
		id, err := New(m, t.TempDir()).Build(context.Background(), ctx, Options{Target: target}, &out)
		if err == nil && m.images[id].ID != id {
			t.Fatalf("built %s, which the backend does not hold", id)
		}
	})
}

// FuzzIgnore: any .dockerignore either is refused as an invalid argument
// or prunes only inside the context.
func FuzzIgnore(f *testing.F) {
	for _, s := range []string{"secret.txt", "logs\n!logs/keep.log", "**/*.tmp", "[", "../x", "/", "!*", "*\n!sub"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, patterns string) {
		parent := t.TempDir()
		guard := filepath.Join(parent, "outside")
		if err := os.WriteFile(guard, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(parent, "ctx")
		for _, p := range []string{"a.txt", "sub/b.tmp", "logs/keep.log"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, p), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(root, ".dockerignore"), []byte(patterns), 0o644); err != nil {
			t.Fatal(err)
		}
		list, err := ignorePatterns(root, "Dockerfile")
		if err == nil {
			err = prune(root, list)
		}
		if err != nil && !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Fatalf("%q: %v is not an invalid argument", patterns, err)
		}
		if _, err := os.Stat(guard); err != nil {
			t.Fatalf("%q removed a file outside the context: %v", patterns, err)
		}
	})
}

// FuzzAddArchive: whatever file ADD finds in the context, taking it for
// an archive or not and extracting it never panics and never writes
// outside the destination.
func FuzzAddArchive(f *testing.F) {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	_ = tw.WriteHeader(&tar.Header{Name: "d/", Mode: 0o755, Typeflag: tar.TypeDir})
	_ = tw.WriteHeader(&tar.Header{Name: "d/f", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("x"))
	_ = tw.WriteHeader(&tar.Header{Name: "l", Linkname: "../../x", Typeflag: tar.TypeSymlink})
	_ = tw.Close()
	f.Add(tb.Bytes())
	f.Add([]byte("BZh91AY&SY"))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		p := filepath.Join(parent, "file")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(parent, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			t.Fatal(err)
		}
		if isArchive(p) {
			_ = applyFile(context.Background(), root, p, parent)
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "file" && e.Name() != "root" {
				t.Fatalf("extracting wrote %s outside the destination", e.Name())
			}
		}
	})
}
