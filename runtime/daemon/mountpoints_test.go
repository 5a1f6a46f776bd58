package daemon

import (
	"archive/tar"
	"bytes"
	"io"
	"slices"
	"testing"
)

// TestMountpointFilter: the runtime's mountpoints leave a container's
// layer, and nothing else does.
func TestMountpointFilter(t *testing.T) {
	type ent struct {
		name string
		typ  byte
		body string
	}
	for _, tc := range []struct {
		what string
		in   []ent
		want []string
	}{
		{"a RUN that wrote nothing", []ent{{"etc/", tar.TypeDir, ""}, {"etc/hostname", tar.TypeReg, ""}, {"etc/hosts", tar.TypeReg, ""}, {"etc/resolv.conf", tar.TypeReg, ""}}, nil},
		{"a RUN that wrote a file", []ent{{"etc/", tar.TypeDir, ""}, {"etc/hosts", tar.TypeReg, ""}, {"x", tar.TypeReg, "data"}}, []string{"x"}},
		{"a changed file in /etc keeps /etc", []ent{{"etc/", tar.TypeDir, ""}, {"etc/hosts", tar.TypeReg, ""}, {"etc/passwd", tar.TypeReg, "root"}, {"etc/resolv.conf", tar.TypeReg, ""}}, []string{"etc/", "etc/passwd"}},
		{"a /etc/hosts with content stays", []ent{{"etc/", tar.TypeDir, ""}, {"etc/hosts", tar.TypeReg, "127.0.0.1 x"}}, []string{"etc/", "etc/hosts"}},
		{"/etc changed alone stays", []ent{{"etc/", tar.TypeDir, ""}, {"usr/", tar.TypeDir, ""}}, []string{"etc/", "usr/"}},
		{"empty mount dirs go, full ones stay", []ent{{"dev/", tar.TypeDir, ""}, {"proc/", tar.TypeDir, ""}, {"sys/", tar.TypeDir, ""}, {"sys/x", tar.TypeReg, "1"}}, []string{"sys/", "sys/x"}},
		{"a whiteout is the layer's own", []ent{{"etc/", tar.TypeDir, ""}, {"etc/.wh.motd", tar.TypeReg, ""}}, []string{"etc/", "etc/.wh.motd"}},
		{"./-prefixed names", []ent{{"./etc/", tar.TypeDir, ""}, {"./etc/hosts", tar.TypeReg, ""}, {"./a", tar.TypeReg, "a"}}, []string{"./a"}},
	} {
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		for _, e := range tc.in {
			if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o755, Size: int64(len(e.body))}); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		f := mountpointFilter(&out)
		if _, err := io.Copy(f, &in); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		var got []string
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: the filtered tar: %v", tc.what, err)
			}
			body, _ := io.ReadAll(tr)
			if int64(len(body)) != h.Size {
				t.Errorf("%s: %s: %d bytes, want %d", tc.what, h.Name, len(body), h.Size)
			}
			got = append(got, h.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.what, got, tc.want)
		}
	}
	// A tar the filter cannot read fails the layer.
	f := mountpointFilter(io.Discard)
	_, _ = f.Write(bytes.Repeat([]byte{'x'}, 1024))
	if err := f.Close(); err == nil {
		t.Error("a broken tar passed the filter")
	}
}
