package btrfs

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/quota"
)

// Probe implements drivers.Factory.Probe.
func Probe(home string) drivers.Probe {
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}}}
	fail := func(format string, args ...any) drivers.Probe {
		p.Reason = fmt.Sprintf(format, args...)
		return p
	}
	has := kernel.HasFilesystem("btrfs")
	p.Facts = append(p.Facts, drivers.Fact{Name: "btrfs in /proc/filesystems", Value: drivers.YesNo(has)})
	if !has {
		return fail("the kernel has no btrfs filesystem (modprobe btrfs, or use overlay2 or vfs)")
	}
	if err := core.CheckHome(Name, home); err != nil {
		p.Class = drivers.ErrInvalidArgument
		return fail("%v", err)
	}
	b, err := kernel.BackingOf(home)
	if err != nil {
		return fail("cannot examine the filesystem under %s: %v", home, err)
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "backing filesystem", Value: fmt.Sprintf("%s (%s) at %s", b.Type, b.Source, b.Path)})
	if reason := notBtrfs(home, b); reason != "" {
		return fail("%s", reason)
	}
	if q, err := quota.NewBtrfs(home); err == nil {
		state := "off (the first size limit turns them on)"
		if on, err := q.Enabled(); err != nil {
			state = "unknown: " + err.Error()
		} else if on {
			state = "on"
		}
		p.Facts = append(p.Facts, drivers.Fact{Name: "btrfs qgroups", Value: state})
	}
	if !kernel.IsRoot() {
		return fail("creating subvolumes and bind-mounting them needs root (CAP_SYS_ADMIN); run as root")
	}
	return p
}

// notBtrfs says why home, on the filesystem b, cannot hold subvolumes, or
// returns "" when it can.
func notBtrfs(home string, b kernel.Backing) string {
	if b.Magic == kernel.MagicBtrfs {
		return ""
	}
	fstype := b.Type
	if fstype == "" {
		fstype = fmt.Sprintf("a filesystem with magic %#x", b.Magic)
	}
	return fmt.Sprintf("home %s is on %s (%s at %s), not btrfs; put it on a btrfs filesystem (mkfs.btrfs) or use overlay2 or vfs", home, fstype, b.Source, b.Path)
}

// canEnableQuota reports whether qgroups could be turned on for the
// filesystem holding dir: root may on any btrfs mounted read-write.
func canEnableQuota(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return kernel.IsRoot() && st.Flags&unix.ST_RDONLY == 0
}
