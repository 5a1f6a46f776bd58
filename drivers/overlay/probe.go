package overlay

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/continuity/fs"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
)

// Probe checks whether an overlay-family driver named name can keep its
// home at home.
func Probe(name, home string) drivers.Probe {
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}}}
	fail := func(format string, args ...any) drivers.Probe {
		if p.Reason == "" {
			p.Reason = fmt.Sprintf(format, args...)
		}
		return p
	}
	has := kernel.HasFilesystem("overlay")
	p.Facts = append(p.Facts, drivers.Fact{Name: "overlay in /proc/filesystems", Value: drivers.YesNo(has)})
	for _, param := range []string{"redirect_dir", "index", "metacopy", "xino_auto"} {
		if v := kernel.Param("overlay", param); v != "" {
			p.Facts = append(p.Facts, drivers.Fact{Name: "overlay." + param, Value: v})
		}
	}
	if !has {
		return fail("the kernel has no overlay filesystem (modprobe overlay, or use vfs)")
	}
	if err := core.CheckHome(name, home); err != nil {
		p.Class = drivers.ErrInvalidArgument
		return fail("%v", err)
	}
	b, err := kernel.BackingOf(home)
	if err != nil {
		return fail("cannot examine the filesystem under %s: %v", home, err)
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "backing filesystem", Value: fmt.Sprintf("%s (%s) at %s", b.Type, b.Source, b.Path)})
	if b.Magic == kernel.MagicOverlay {
		return fail("home %s is on overlayfs itself, which cannot be an upper layer; put it on ext4, xfs or btrfs", home)
	}
	dtype, err := fs.SupportsDType(b.Path)
	if err != nil {
		p.Facts = append(p.Facts, drivers.Fact{Name: "d_type", Value: "unknown: " + err.Error()})
	} else {
		p.Facts = append(p.Facts, drivers.Fact{Name: "d_type", Value: drivers.YesNo(dtype)})
		if !dtype {
			return fail("the %s filesystem under %s does not report d_type, which overlay needs to find whiteouts; for xfs, reformat with mkfs.xfs -n ftype=1", b.Type, b.Path)
		}
	}
	if !kernel.IsRoot() {
		return fail("mounting overlays needs root (CAP_SYS_ADMIN); run as root")
	}
	return p
}

// checkMultipleLowers mounts a two-lower overlay under home, as the real
// test of what overlay2 needs.
func checkMultipleLowers(home string) error {
	dir, err := os.MkdirTemp(home, ".probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, d := range []string{"l1", "l2", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	m := drivers.Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + filepath.Join(dir, "l1") + ":" + filepath.Join(dir, "l2"),
		"upperdir=" + filepath.Join(dir, "upper"),
		"workdir=" + filepath.Join(dir, "work"),
	}}
	merged := filepath.Join(dir, "merged")
	if err := mount.All([]drivers.Mount{m}, merged); err != nil {
		return fmt.Errorf("overlay with two lower directories: %w: %w", drivers.ErrUnavailable, err)
	}
	return mount.Unmount(merged)
}
