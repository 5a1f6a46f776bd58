package loopfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
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

// recorder is a TB that records instead of stopping the test goroutine.
type recorder struct {
	skipped, failed []string
	cleanups        []func()
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = append(r.skipped, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *recorder) cleanUp() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// Mount data the kernel refuses is a failure unless it asks for a feature
// a kernel may lack; only then is the test skipped, naming that feature.
func TestForTestWithRefusedData(t *testing.T) {
	if err := Check("ext4"); err != nil {
		feature.Skip(t, feature.Ext4, "%v", err)
	}
	t.Setenv(feature.Env, "")
	var r recorder
	if fs := ForTestWith(&r, "ext4", 0, "nosuchoption"); fs != nil || len(r.failed) != 1 || len(r.skipped) != 0 {
		t.Fatalf("ext4 with nosuchoption: fs %v, skipped %q, failed %q; want a failure", fs, r.skipped, r.failed)
	}
	r.cleanUp()

	if err := Check("xfs"); err != nil {
		feature.Skip(t, feature.XFS, "%v", err)
	}
	r = recorder{}
	fs := ForTestWith(&r, "xfs", 0, "prjquota")
	defer r.cleanUp()
	switch {
	case len(r.failed) != 0:
		t.Fatalf("xfs with prjquota failed: %q", r.failed)
	case fs == nil && (len(r.skipped) != 1 || !strings.Contains(r.skipped[0], "xfs-quota is missing")):
		t.Fatalf("xfs with prjquota refused, skipped %q; want a skip naming xfs-quota", r.skipped)
	case fs == nil:
		t.Logf("this kernel has no xfs quota: %s", r.skipped[0])
	default:
		if m, err := mount.Lookup(fs.Dir); err != nil || !strings.Contains(m.VFSOptions, "prjquota") {
			t.Fatalf("xfs mounted with prjquota shows options %+v, %v", m, err)
		}
		t.Logf("this kernel has xfs quota: mounted %s", fs.Dir)
	}

	t.Setenv(feature.Env, feature.XFSQuota)
	r2 := recorder{}
	if fs := ForTestWith(&r2, "xfs", 0, "prjquota"); fs == nil && (len(r2.failed) != 1 || !strings.Contains(r2.failed[0], "required feature xfs-quota")) {
		t.Fatalf("LAYERLAB_REQUIRE=xfs-quota without xfs quota: skipped %q, failed %q; want a failure naming it", r2.skipped, r2.failed)
	}
	r2.cleanUp()
}

func TestOptionFeature(t *testing.T) {
	for _, c := range []struct{ fstype, data, want string }{
		{"xfs", "prjquota", feature.XFSQuota},
		{"xfs", "noatime,pquota", feature.XFSQuota},
		{"xfs", "noatime", ""},
		{"ext4", "discard", ""},
		{"ext4", "prjquota", ""},
	} {
		if got := optionFeature(c.fstype, c.data); got != c.want {
			t.Errorf("%s with %q: %q, want %q", c.fstype, c.data, got, c.want)
		}
	}
}
