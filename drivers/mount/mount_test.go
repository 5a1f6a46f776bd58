package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
)

func TestParse(t *testing.T) {
	flags, data := parse([]string{"ro", "rbind", "nosuid", "lowerdir=/a:/b", "index=off", "rw"})
	if flags != unix.MS_BIND|unix.MS_REC|unix.MS_NOSUID {
		t.Errorf("flags %#x", flags)
	}
	if data != "lowerdir=/a:/b,index=off" {
		t.Errorf("data %q", data)
	}
}

func TestCompactLowerdir(t *testing.T) {
	dir, data, err := compactLowerdir("index=off,lowerdir=/h/l/1:/h/l/22,upperdir=/h/s/3/fs,workdir=/h/s/3/work")
	if err != nil {
		t.Fatal(err)
	}
	if dir != "/h/l" || data != "index=off,lowerdir=1:22,upperdir=/h/s/3/fs,workdir=/h/s/3/work" {
		t.Fatalf("got %q %q", dir, data)
	}
	if _, _, err := compactLowerdir("lowerdir=/a/1:/b/2"); err == nil || !strings.Contains(err.Error(), "share no parent") {
		t.Fatalf("lowerdirs in different directories: %v", err)
	}
}

// An overlay whose options are longer than a page mounts through the
// relative-path fallback, and the mount shows every layer.
func TestLongOverlayMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "mounting needs root")
	}
	base := t.TempDir()
	long := filepath.Join(base, strings.Repeat("d", 100), "l")
	var lowers []string
	for i := 0; i < 100; i++ {
		p := filepath.Join(long, fmt.Sprintf("layer-%03d", i))
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(p, fmt.Sprintf("f%03d", i)), nil, 0o644)
		lowers = append(lowers, p)
	}
	m := drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + strings.Join(lowers, ":")}}
	if n := len(m.Options[0]); n < os.Getpagesize() {
		t.Fatalf("options are %d bytes; the test needs more than a page", n)
	}
	target := filepath.Join(base, "merged")
	os.Mkdir(target, 0o755)
	if err := All([]drivers.Mount{m}, target); err != nil {
		t.Fatal(err)
	}
	defer UnmountAll(target)
	entries, err := os.ReadDir(target)
	if err != nil || len(entries) != 100 {
		t.Fatalf("merged view has %d entries (%v), want 100", len(entries), err)
	}
	if cwd, _ := os.Getwd(); cwd == long {
		t.Fatal("the chdir leaked into the process")
	}
	if err := UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Mounted(target); ok {
		t.Fatal("still mounted")
	}
}

func TestReadOnlyBind(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "mounting needs root")
	}
	src, target := t.TempDir(), t.TempDir()
	if err := All([]drivers.Mount{{Type: "bind", Source: src, Options: []string{"rbind", "ro"}}}, target); err != nil {
		t.Fatal(err)
	}
	defer UnmountAll(target)
	if err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644); err == nil {
		t.Fatal("wrote through a read-only bind")
	}
}
