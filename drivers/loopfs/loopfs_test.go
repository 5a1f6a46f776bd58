package loopfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/mount"
)

func TestEachTypeMountsAndTearsDown(t *testing.T) {
	for _, typ := range Types() {
		t.Run(typ, func(t *testing.T) {
			fs := ForTest(t, typ, 0)
			m, err := mount.Lookup(fs.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.Mountpoint != fs.Dir || m.FSType != typ || !strings.HasPrefix(m.Source, "/dev/loop") {
				t.Fatalf("mount of %s: got %s %s %s", typ, m.Mountpoint, m.FSType, m.Source)
			}
			t.Logf("%s on %s, direct I/O %v", typ, fs.Device, fs.DirectIO)
			if err := os.WriteFile(filepath.Join(fs.Dir, "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			dev := filepath.Base(fs.Device)
			if err := fs.Close(); err != nil {
				t.Fatal(err)
			}
			if ok, _ := mount.Mounted(fs.Dir); ok {
				t.Fatalf("%s still mounted", fs.Dir)
			}
			// autoclear frees the device once the mount is gone
			if b, err := os.ReadFile("/sys/block/" + dev + "/loop/backing_file"); err == nil {
				t.Fatalf("%s still attached to %s", dev, strings.TrimSpace(string(b)))
			}
		})
	}
}

func TestUnknownTypeIsRefused(t *testing.T) {
	err := Check("ntfs")
	if err == nil || !strings.Contains(err.Error(), "ext4") {
		t.Fatalf("want an error listing the types, got %v", err)
	}
}
