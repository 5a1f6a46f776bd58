// Package feature is how a test says that something it needs is missing
// here: a filesystem, a kernel feature, a tool or root. Such a test calls
// Skip instead of testing.T.Skip. The environment variable LAYERLAB_REQUIRE
// lists the features a run must have (`make test` sets it to what this
// machine and its qemu guest can run); for those, Skip fails the test
// instead, naming the missing feature, so a skip can never hide a failure.
//
// The list is read from the environment at each call, so the package keeps
// no state of its own and takes no testing import (it is used by the test
// fixtures in drivers/loopfs, which ship in non-test binaries too).
package feature

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// Env is the environment variable that lists required features, comma
// separated, e.g. LAYERLAB_REQUIRE=btrfs,zfs,overlay.
const Env = "LAYERLAB_REQUIRE"

// The features tests skip for. Filesystems are named by their type, drivers
// by their registry name.
const (
	Root         = "root"         // running as root (mounts, loop devices)
	Ext4         = "ext4"         // loop-mounted ext4 (mkfs.ext4 and the kernel's ext4)
	XFS          = "xfs"          // loop-mounted xfs
	Btrfs        = "btrfs"        // loop-mounted btrfs
	XFSQuota     = "xfs-quota"    // xfs mounted with prjquota (CONFIG_XFS_QUOTA)
	ZFS          = "zfs"          // a zfs pool (kernel ZFS or zfs-fuse)
	Overlay      = "overlay"      // overlayfs mounts and its trusted.overlay.* xattrs
	Overlay2     = "overlay2"     // the overlay2 driver's probe
	Vfs          = "vfs"          // the vfs driver's probe
	Aufs         = "aufs"         // aufs in the kernel
	DeviceMapper = "devicemapper" // device-mapper thin provisioning
	Cgroup2      = "cgroup2"      // the unified cgroup hierarchy
	Chromium     = "chromium"     // a headless browser for the report check
	Busybox      = "busybox"      // busybox-static, for a real image built offline
	Debian       = "debian"       // a Debian minbase built by debootstrap from the mirror
	Docker       = "docker"       // the docker CLI at /usr/local/bin/docker, to drive layerlabd
	DockerPy     = "docker-py"    // Debian's python3-docker under /usr/bin/python3, to drive layerlabd
	Runc         = "runc"         // Debian's runc binary, for layerlabd's --runtime runc
	Rsyslog      = "rsyslog"      // Debian's rsyslogd, the syslog log driver's receiver
	Prometheus   = "prometheus"   // Debian's prometheus, scraping layerlabd's --metrics-addr
	Containerd   = "containerd"   // Debian's containerd 1.6 and ctr, to serve drivers as proxy snapshotters
	Registry     = "registry"     // Debian's docker-registry (distribution 2.8), for push, pull and login
	Skopeo       = "skopeo"       // Debian's skopeo and umoci, reading and writing images beside layerlabd
)

// Known returns every feature name Skip accepts, sorted.
func Known() []string {
	k := []string{Root, Ext4, XFS, Btrfs, XFSQuota, ZFS, Overlay, Overlay2, Vfs, Aufs, DeviceMapper, Cgroup2, Chromium, Busybox, Debian, Docker, DockerPy, Runc, Rsyslog, Prometheus, Containerd, Registry, Skopeo}
	slices.Sort(k)
	return k
}

// TB is the part of testing.TB that Skip uses.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Skip skips t because feature is missing, saying why; when LAYERLAB_REQUIRE
// lists feature (or names one that does not exist) it fails t instead.
func Skip(t TB, feature string, format string, args ...any) {
	t.Helper()
	why := fmt.Sprintf(format, args...)
	if err := Check(os.Getenv(Env), feature); err != nil {
		t.Fatalf("%v: %s", err, why)
		return // for a TB whose Fatalf returns
	}
	t.Skipf("%s is missing here: %s", feature, why)
}

// Check returns nil when a missing feature may be skipped under the
// requirement list list (LAYERLAB_REQUIRE's value), else why not: the list
// requires the feature, or it names a feature that does not exist (a typo
// that would otherwise quietly require nothing). An unknown feature passed
// by a test is a bug in the test, reported the same way.
func Check(list, feature string) error {
	known := Known()
	if !slices.Contains(known, feature) {
		return fmt.Errorf("test bug: feature %q is not one of %s", feature, strings.Join(known, ", "))
	}
	for _, f := range parse(list) {
		if !slices.Contains(known, f) {
			return fmt.Errorf("%s=%s names %q, which is not a feature (known: %s); fix the list", Env, list, f, strings.Join(known, ", "))
		}
	}
	if slices.Contains(parse(list), feature) {
		return fmt.Errorf("required feature %s is missing (%s=%s); install or enable it (`make setup`), or drop %s from %s", feature, Env, list, feature, Env)
	}
	return nil
}

// parse splits a comma list, ignoring blanks and spaces.
func parse(list string) []string {
	var out []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
