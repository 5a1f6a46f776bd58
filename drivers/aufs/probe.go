package aufs

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
)

// ReasonNoAufs is the probe's reason on kernels without aufs, which is
// every kernel built from mainline sources.
const ReasonNoAufs = "the running kernel has no aufs (it is in no mainline kernel; use the aufs Vagrant VM, an Ubuntu 20.04 kernel)"

// Statfs magic numbers of filesystems a home may not be on (linux/magic.h;
// aufs's is AUFS_SUPER_MAGIC from its aufs_type.h).
const (
	magicAufs     = 'a'<<24 | 'u'<<16 | 'f'<<8 | 's'
	magicEcryptfs = 0xf15f
	magicRamfs    = 0x858458f6
)

// Probe checks whether aufs can keep its home at home.
func Probe(home string) drivers.Probe {
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}}}
	fail := func(format string, args ...any) drivers.Probe {
		if p.Reason == "" {
			p.Reason = fmt.Sprintf(format, args...)
		}
		return p
	}
	has := kernel.HasFilesystem("aufs")
	p.Facts = append(p.Facts, drivers.Fact{Name: "aufs in /proc/filesystems", Value: drivers.YesNo(has)})
	if v := version(); v != "" {
		p.Facts = append(p.Facts, drivers.Fact{Name: "aufs version", Value: v})
	}
	if n, src := branchLimit(); src != "" {
		p.Facts = append(p.Facts, drivers.Fact{Name: "aufs branch limit", Value: fmt.Sprintf("%d (%s)", n, src)})
	}
	if !has {
		// Ubuntu ships aufs as a module; then it only needs loading.
		if m, _ := filepath.Glob(filepath.Join("/lib/modules", kernel.Release(), "kernel/fs/aufs/aufs.ko*")); len(m) > 0 {
			return fail("the aufs module is installed (%s) but not loaded; run modprobe aufs", m[0])
		}
		return fail("%s", ReasonNoAufs)
	}
	if err := core.CheckHome(Name, home); err != nil {
		p.Class = drivers.ErrInvalidArgument
		return fail("%v", err)
	}
	if strings.ContainsAny(home, ",:=") {
		p.Class = drivers.ErrInvalidArgument
		return fail("home %s contains ',', ':' or '=', which aufs branch options cannot carry; choose a home path without them", home)
	}
	b, err := kernel.BackingOf(home)
	if err != nil {
		return fail("cannot examine the filesystem under %s: %v", home, err)
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "backing filesystem", Value: fmt.Sprintf("%s (%s) at %s", b.Type, b.Source, b.Path)})
	if r := refuseBacking(b.Magic); r != "" {
		return fail("home %s is on %s; put it on ext4 or xfs", home, r)
	}
	if st, err := os.Stat(xinoDir); err != nil || !st.IsDir() {
		return fail("aufs keeps its xino files in %s, which is missing; mount a tmpfs there", xinoDir)
	}
	if !kernel.IsRoot() {
		return fail("mounting aufs needs root (CAP_SYS_ADMIN); run as root")
	}
	return p
}

// refuseBacking says why a home cannot be on the filesystem with statfs
// magic, or "" when it can. The aufs kernel code refuses as a branch
// (au_test_fs_unsuppoted in fs/aufs/fstype.h) aufs itself, ecryptfs, ramfs
// and pseudo filesystems such as proc and sysfs that cannot hold a home;
// dockerd also refused btrfs (moby#6109). tmpfs is accepted: aufs supports
// tmpfs branches.
func refuseBacking(magic int64) string {
	switch magic {
	case magicAufs:
		return "aufs, and aufs refuses an aufs branch"
	case magicEcryptfs:
		return "ecryptfs, which aufs refuses as a branch"
	case magicRamfs:
		return "ramfs, which aufs refuses as a branch"
	case kernel.MagicBtrfs:
		return "btrfs, under which dockerd refused to run aufs as unreliable (use the btrfs driver there)"
	case kernel.MagicOverlay:
		// aufs's code does not refuse it; a union branch on another union
		// is the docker-in-docker setup known to misbehave.
		return "overlayfs, and a union filesystem's branches on another union filesystem misbehave"
	}
	return ""
}

// version is the running aufs's version (AUFS_VERSION, e.g. 5.4-20210906),
// "" when aufs is not loaded. aufs declares MODULE_VERSION, which the
// kernel shows for built-in and loaded modules alike.
func version() string {
	b, err := os.ReadFile("/sys/module/aufs/version")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// dirperm1ByVersion tells from an aufs version whether it takes dirperm1:
// every aufs4 and later does (the option is among aufs4.0's base topics in
// aufs-standalone, and aufs5's opts.c parses it); aufs2 predates it. aufs3
// gained it during the 3.x series (Ubuntu 14.04's 3.13 lacks it, 14.10's
// 3.16 has it), so for aufs3 the version does not tell: known is false.
func dirperm1ByVersion(v string) (ok, known bool) {
	major, _, found := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if !found || err != nil {
		return false, false
	}
	switch {
	case n >= 4:
		return true, true
	case n <= 2:
		return false, true
	}
	return false, false
}

// supportsDirperm1 asks the running aufs whether it takes dirperm1: by its
// version where that tells, else by mounting a one-branch aufs with the
// option under home, as dockerd did.
func supportsDirperm1(home string) bool {
	if ok, known := dirperm1ByVersion(version()); known {
		return ok
	}
	dir, err := os.MkdirTemp(home, ".dirperm1-")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	base, union := filepath.Join(dir, "base"), filepath.Join(dir, "union")
	for _, d := range []string{base, union} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return false
		}
	}
	m := drivers.Mount{Type: "aufs", Source: "none", Options: []string{
		"br:" + base + permRW, "xino=" + xinoPath(home, "probe"), "dirperm1",
	}}
	if err := mount.All([]drivers.Mount{m}, union); err != nil {
		return false
	}
	mount.Unmount(union)
	return true
}

// maxBranches is the running aufs's branch limit, the Kconfig default when
// the kernel configuration cannot be read.
func maxBranches() int {
	n, _ := branchLimit()
	return n
}

// aufsConfig is where aufs built as a module (Ubuntu's) shows the
// configuration it was built with, one CONFIG_AUFS_*=y line each
// (fs/aufs/sysfs.c config_show, from conf.mk's conf.str); built-in aufs
// has no such file and is read from the kernel's configuration.
const aufsConfig = "/sys/fs/aufs/config"

// branchLimit reads CONFIG_AUFS_BRANCH_MAX_* from the running aufs (its
// sysfs config), else from the running kernel's configuration, and says
// where it found it; DefaultMaxBranches and "" when it found none.
func branchLimit() (int, string) {
	for _, path := range []string{aufsConfig, "/boot/config-" + kernel.Release(), "/proc/config.gz"} {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		var r io.Reader = f
		if strings.HasSuffix(path, ".gz") {
			if r, err = gzip.NewReader(f); err != nil {
				f.Close()
				continue
			}
		}
		n, ok := branchMaxFromConfig(r)
		f.Close()
		if ok {
			return n, path
		}
	}
	return DefaultMaxBranches, ""
}

// branchMaxFromConfig finds the chosen CONFIG_AUFS_BRANCH_MAX_* in a
// kernel configuration.
func branchMaxFromConfig(r io.Reader) (int, bool) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "CONFIG_AUFS_BRANCH_MAX_")
		if v, ok = strings.CutSuffix(v, "=y"); !ok {
			continue
		}
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return n, true
		}
	}
	return 0, false
}
