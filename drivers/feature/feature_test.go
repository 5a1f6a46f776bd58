package feature

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records what Skip asked for instead of stopping
// the goroutine, as testing.T's Skipf and Fatalf would.
type recorder struct {
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = fmt.Sprintf(format, args...) }

func TestSkip(t *testing.T) {
	for _, c := range []struct {
		env      string
		feature  string
		fail     bool
		mentions []string
	}{
		{"", Btrfs, false, []string{"btrfs is missing here", "mkfs.btrfs not found"}},
		{"zfs, overlay", Btrfs, false, []string{"btrfs is missing here"}},
		{"btrfs", Btrfs, true, []string{"required feature btrfs is missing", "LAYERLAB_REQUIRE=btrfs", "mkfs.btrfs not found"}},
		{" zfs , btrfs ,", Btrfs, true, []string{"required feature btrfs"}},
		{"devicemapper,xfs-quota", XFSQuota, true, []string{"required feature xfs-quota"}},
		{"btfrs", Btrfs, true, []string{`names "btfrs", which is not a feature`, "known: aufs, btrfs"}},
		{"", "btrfs-progs", true, []string{`test bug: feature "btrfs-progs"`}},
	} {
		t.Run(c.env+"/"+c.feature, func(t *testing.T) {
			t.Setenv(Env, c.env)
			var r recorder
			Skip(&r, c.feature, "%s not found", "mkfs.btrfs")
			got := r.skipped
			if c.fail {
				got = r.failed
			}
			if (r.failed != "") != c.fail || (r.skipped != "") == c.fail {
				t.Fatalf("%s=%q, feature %s: skipped %q, failed %q; want fail=%v", Env, c.env, c.feature, r.skipped, r.failed, c.fail)
			}
			for _, m := range c.mentions {
				if !strings.Contains(got, m) {
					t.Errorf("%q does not mention %q", got, m)
				}
			}
		})
	}
}

func TestKnownNamesEveryConstant(t *testing.T) {
	for _, f := range []string{Root, Ext4, XFS, Btrfs, XFSQuota, ZFS, Overlay, Overlay2, Vfs, Aufs, DeviceMapper, Cgroup2, Chromium, Busybox, Debian} {
		if err := Check("", f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
