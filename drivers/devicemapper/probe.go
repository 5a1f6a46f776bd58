package devicemapper

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// noThinPool is the probe's answer on a kernel without dm-thin, such as
// the development VM's: the driver runs in the qemu test guest.
const noThinPool = "the kernel has no device-mapper thin-pool; run `make vm-test` or use the devicemapper Vagrant VM"

// Probe implements drivers.Factory.Probe: device-mapper with the
// thin-pool target (loaded, or a module the kernel loads on first use),
// root, a usable home and mkfs.
func Probe(home string) drivers.Probe {
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}}}
	fail := func(format string, args ...any) drivers.Probe {
		p.Reason = fmt.Sprintf(format, args...)
		return p
	}
	misc := hasMisc("device-mapper")
	p.Facts = append(p.Facts, drivers.Fact{Name: "device-mapper in /proc/misc", Value: drivers.YesNo(misc)})
	if !misc {
		return fail(noThinPool)
	}
	if !kernel.IsRoot() {
		return fail("device-mapper needs root (CAP_SYS_ADMIN); run as root")
	}
	ctl, err := openIoctlControl()
	if err != nil {
		p.Facts = append(p.Facts, drivers.Fact{Name: controlPath, Value: err.Error()})
		return fail(noThinPool)
	}
	targets, err := ctl.Targets()
	ctl.Close()
	if err != nil {
		return fail("cannot list device-mapper targets: %v", err)
	}
	switch v, ok := targets["thin-pool"]; {
	case ok:
		p.Facts = append(p.Facts, drivers.Fact{Name: "thin-pool target", Value: v})
	case hasModule("dm-thin-pool"):
		p.Facts = append(p.Facts, drivers.Fact{Name: "thin-pool target", Value: "module dm-thin-pool, loaded on first use"})
	default:
		p.Facts = append(p.Facts, drivers.Fact{Name: "thin-pool target", Value: "none"})
		return fail(noThinPool)
	}
	if err := core.CheckHome(Name, home); err != nil {
		p.Class = drivers.ErrInvalidArgument
		return fail("%v", err)
	}
	for _, tool := range []string{"mkfs.ext4", "resize2fs"} {
		if !command.Available(tool) {
			return fail("%s is not installed (e2fsprogs); run `make setup`", tool)
		}
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "dmsetup", Value: drivers.YesNo(command.Available("dmsetup")) + " (for dm.control=dmsetup)"})
	return p
}

// hasMisc reports whether /proc/misc lists a driver: device-mapper's
// control device is a misc device, whose node may exist (as it does on
// the development VM) where the kernel has no driver behind it.
func hasMisc(name string) bool {
	b, err := os.ReadFile("/proc/misc")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == name {
			return true
		}
	}
	return false
}

// hasModule reports whether the running kernel has module name, built in
// or on disk to be loaded.
func hasModule(name string) bool {
	dir := filepath.Join("/lib/modules", kernel.Release())
	for _, f := range []string{"modules.builtin", "modules.dep"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err == nil && (strings.Contains(string(b), "/"+name+".ko") || strings.Contains(string(b), "/"+strings.ReplaceAll(name, "-", "_")+".ko")) {
			return true
		}
	}
	return false
}
