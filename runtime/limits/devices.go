package limits

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	units "github.com/docker/go-units"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Devices returns the host devices --device puts in the container (each
// node made at its path in the container, as dockerd does) and the cgroup
// rules that let the container use them and those --device-cgroup-rule
// adds. A path that is no device node, or a bad permission or rule, is
// refused with dockerd's words.
func Devices(r container.Resources) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var devs []specs.LinuxDevice
	var rules []specs.LinuxDeviceCgroup
	for _, m := range r.Devices {
		perms := m.CgroupPermissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" || len(perms) > 3 {
			return nil, nil, invalid("invalid device mode: %s", perms)
		}
		inCtr := m.PathInContainer
		if inCtr == "" {
			inCtr = m.PathOnHost
		}
		if !filepath.IsAbs(inCtr) {
			return nil, nil, invalid("%s is not an absolute path", inCtr)
		}
		dev, err := hostDevice(m.PathOnHost, inCtr)
		if err != nil {
			return nil, nil, err
		}
		devs = append(devs, dev)
		major, minor := dev.Major, dev.Minor
		rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms})
	}
	for _, rule := range r.DeviceCgroupRules {
		c, err := parseCgroupRule(rule)
		if err != nil {
			return nil, nil, err
		}
		rules = append(rules, c)
	}
	return devs, rules, nil
}

// hostDevice describes the device node at path on the host.
func hostDevice(path, inCtr string) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return specs.LinuxDevice{}, invalid("error gathering device information while adding custom device %q: %v", path, err)
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, invalid("error gathering device information while adding custom device %q: not a device node", path)
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{Path: inCtr, Type: typ, Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode, UID: &uid, GID: &gid}, nil
}

// parseCgroupRule reads a --device-cgroup-rule, "TYPE MAJOR:MINOR PERMS"
// (type a, b or c; major and minor a number or *), as dockerd does.
func parseCgroupRule(rule string) (specs.LinuxDeviceCgroup, error) {
	bad := func() (specs.LinuxDeviceCgroup, error) {
		return specs.LinuxDeviceCgroup{}, invalid("invalid device cgroup rule %q: want TYPE MAJOR:MINOR PERMS, e.g. 'c 1:3 rwm' or 'b *:* r'", rule)
	}
	f := strings.Fields(rule)
	if len(f) != 3 || (f[0] != "a" && f[0] != "b" && f[0] != "c") || f[2] == "" || strings.Trim(f[2], "rwm") != "" || len(f[2]) > 3 {
		return bad()
	}
	maj, min, ok := strings.Cut(f[1], ":")
	if !ok {
		return bad()
	}
	num := func(s string) (*int64, bool) {
		if s == "*" {
			return nil, true
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return nil, false
		}
		return &n, true
	}
	major, ok1 := num(maj)
	minor, ok2 := num(min)
	if !ok1 || !ok2 {
		return bad()
	}
	return specs.LinuxDeviceCgroup{Allow: true, Type: f[0], Major: major, Minor: minor, Access: f[2]}, nil
}

// Rlimits returns --ulimit's limits as the process's rlimits.
func Rlimits(r container.Resources) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, u := range r.Ulimits {
		if u == nil {
			continue
		}
		if _, err := units.ParseUlimit(fmt.Sprintf("%s=%d:%d", u.Name, u.Soft, u.Hard)); err != nil {
			return nil, invalid("--ulimit %s: %v", u.Name, err)
		}
		out = append(out, specs.POSIXRlimit{Type: "RLIMIT_" + strings.ToUpper(u.Name), Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
	}
	return out, nil
}

// checkUnsupported refuses what layerlabd cannot give and warns about
// what dockerd also drops: GPUs and other device requests (no device
// plugin here), real-time CPU time without the kernel's support, and
// kernel memory limits (gone from cgroup v2 and deprecated on v1; dockerd
// warns and drops them).
func checkUnsupported(r *container.Resources, h *Host) ([]string, error) {
	var w []string
	if len(r.DeviceRequests) > 0 {
		return w, fmt.Errorf("device requests (--gpus) are not supported by layerlabd: it has no device driver for them; pass devices with --device: %w", drivers.ErrNotImplemented)
	}
	if (r.CPURealtimePeriod != 0 || r.CPURealtimeRuntime != 0) && !h.CPURealtime {
		return w, invalid("Your kernel does not support CPU real-time scheduler")
	}
	if r.KernelMemory != 0 || r.KernelMemoryTCP != 0 {
		w = append(w, "Specifying a kernel memory limit is deprecated and not supported by this kernel's cgroups; the limit is discarded.")
		r.KernelMemory, r.KernelMemoryTCP = 0, 0
	}
	for _, u := range r.Ulimits {
		if u != nil && u.Soft > u.Hard {
			return w, invalid("ulimit soft limit must be less than or equal to hard limit: %d > %d", u.Soft, u.Hard)
		}
	}
	return w, nil
}
