// Package limits turns the resource limits of a Docker create or update
// (HostConfig.Resources: --memory, --cpus, --cpuset-cpus, --pids-limit,
// --device-write-bps, ...) into the OCI spec's Linux.Resources, which both
// executors hand to the kernel's cgroups (libcontainer's cgroup manager,
// or runc). Check validates them first as dockerd does, against what this
// host's cgroups can do as dockerd's own probe (docker/docker's
// pkg/sysinfo) sees it: what the host lacks is discarded with dockerd's
// warning (this host has no blkio.weight), what is wrong is an error
// wrapping drivers.ErrInvalidArgument with dockerd's words.
package limits

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/docker/docker/api/types/blkiodev"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/sysinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Kernel bounds dockerd enforces (daemon/daemon_unix.go).
const (
	MinMemory    = 6 << 20 // the smallest --memory and --memory-reservation
	minCPUShares = 2
	maxCPUShares = 262144
	// DefaultCPUPeriod is the CFS period --cpus is expressed over.
	DefaultCPUPeriod = 100000
)

// Host is what this host's cgroups can limit.
type Host = sysinfo.SysInfo

// Probe reads what the host's cgroups (v1 or v2) can limit. On v2
// dockerd's probe takes a weight for granted wherever the io controller
// is; the kernel has a weight file only with iocost (whose root files
// are io.cost.*) or BFQ, and without one runc's write of io.weight would
// fail the start, so the weight is discarded with the warning instead.
func Probe() *Host {
	h := sysinfo.New()
	if h.BlkioWeight && Cgroup2() {
		weight := false
		for _, f := range []string{"io.cost.qos", "io.cost.model", "io.bfq.weight", "*/io.weight", "*/io.bfq.weight"} {
			if m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", f)); len(m) > 0 {
				weight = true
			}
		}
		h.BlkioWeight = weight
	}
	return h
}

// Cgroup2 says the host's cgroups are pure v2.
func Cgroup2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// Defaults fills in what dockerd fills in at create: swap twice the
// memory limit when the host limits swap, CPU shares within the kernel's
// bounds, and the OOM killer enabled.
func Defaults(r *container.Resources, h *Host) {
	if r.Memory > 0 && r.MemorySwap == 0 && h.SwapLimit {
		r.MemorySwap = 2 * r.Memory
	}
	switch {
	case r.CPUShares < 0:
		r.CPUShares = minCPUShares
	case r.CPUShares > maxCPUShares:
		r.CPUShares = maxCPUShares
	}
	if r.PidsLimit != nil && *r.PidsLimit <= 0 {
		r.PidsLimit = nil // 0 and -1 both mean unlimited
	}
	if r.OomKillDisable == nil {
		r.OomKillDisable = ptr(false) // inspect shows false, as dockerd's
	}
}

// invalid is a refused limit, with dockerd's words.
func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, drivers.ErrInvalidArgument)...)
}

// Check validates r as dockerd's verifyPlatformContainerResources does
// (update: r is a docker update's, where zero means unchanged): it
// returns dockerd's warnings for what the host cannot limit, and clears
// those fields in r, or an error wrapping drivers.ErrInvalidArgument.
func Check(r *container.Resources, h *Host, update bool) ([]string, error) {
	w, err := checkMemory(r, h, update)
	if err != nil {
		return w, err
	}
	cw, err := checkCPU(r, h)
	w = append(w, cw...)
	if err != nil {
		return w, err
	}
	bw, err := checkBlkio(r, h)
	w = append(w, bw...)
	if err != nil {
		return w, err
	}
	uw, err := checkUnsupported(r, h)
	w = append(w, uw...)
	if err != nil {
		return w, err
	}
	if _, _, err := Devices(*r); err != nil {
		return w, err
	}
	_, err = Rlimits(*r)
	return w, err
}

func checkMemory(r *container.Resources, h *Host, update bool) (w []string, err error) {
	if r.MemorySwappiness != nil && *r.MemorySwappiness == -1 {
		r.MemorySwappiness = nil // the CLI's default: inherit
	}
	if r.Memory != 0 && r.Memory < MinMemory {
		return w, invalid("Minimum memory limit allowed is 6MB")
	}
	if r.Memory > 0 && !h.MemoryLimit {
		w = append(w, "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.")
		r.Memory, r.MemorySwap = 0, -1
	}
	if r.Memory > 0 && r.MemorySwap != -1 && !h.SwapLimit {
		w = append(w, "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.")
		r.MemorySwap = -1
	}
	if r.Memory > 0 && r.MemorySwap > 0 && r.MemorySwap < r.Memory {
		return w, invalid("Minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if r.Memory == 0 && r.MemorySwap > 0 && !update {
		return w, invalid("You should always set the Memory limit when using Memoryswap limit, see usage")
	}
	if r.MemorySwappiness != nil && !h.MemorySwappiness {
		w = append(w, "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.")
		r.MemorySwappiness = nil
	}
	if s := r.MemorySwappiness; s != nil && (*s < 0 || *s > 100) {
		return w, invalid("Invalid value: %v, valid memory swappiness range is 0-100", *s)
	}
	if r.MemoryReservation > 0 && !h.MemoryReservation {
		w = append(w, "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.")
		r.MemoryReservation = 0
	}
	if r.MemoryReservation > 0 && r.MemoryReservation < MinMemory {
		return w, invalid("Minimum memory reservation allowed is 6MB")
	}
	if r.Memory > 0 && r.MemoryReservation > 0 && r.Memory < r.MemoryReservation {
		return w, invalid("Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if r.OomKillDisable != nil && !h.OomKillDisable {
		if *r.OomKillDisable {
			w = append(w, "Your kernel does not support OomKillDisable. OomKillDisable discarded.")
		}
		r.OomKillDisable = nil
	}
	if r.OomKillDisable != nil && *r.OomKillDisable && r.Memory == 0 && !update {
		w = append(w, "OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.")
	}
	if r.PidsLimit != nil && !h.PidsLimit {
		if *r.PidsLimit > 0 {
			w = append(w, "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.")
		}
		r.PidsLimit = nil
	}
	return w, nil
}

func checkCPU(r *container.Resources, h *Host) (w []string, err error) {
	ncpu := runtime.NumCPU()
	switch {
	case r.NanoCPUs > 0 && r.CPUPeriod > 0:
		return w, invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set")
	case r.NanoCPUs > 0 && r.CPUQuota > 0:
		return w, invalid("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
	case r.NanoCPUs > 0 && !h.CPUCfs:
		return w, invalid("NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted")
	case r.NanoCPUs < 0 || r.NanoCPUs > int64(ncpu)*1e9:
		return w, invalid("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", ncpu, ncpu)
	}
	if r.CPUShares > 0 && !h.CPUShares {
		w = append(w, "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.")
		r.CPUShares = 0
	}
	if (r.CPUPeriod != 0 || r.CPUQuota != 0) && !h.CPUCfs {
		w = append(w, "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.")
		r.CPUPeriod, r.CPUQuota = 0, 0
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return w, invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return w, invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	}
	if r.CPUPercent > 0 {
		w = append(w, "linux does not support CPU percent. Percent discarded.")
		r.CPUPercent = 0
	}
	if (r.CpusetCpus != "" || r.CpusetMems != "") && !h.Cpuset {
		w = append(w, "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.")
		r.CpusetCpus, r.CpusetMems = "", ""
	}
	ok, err := h.IsCpusetCpusAvailable(r.CpusetCpus)
	if err != nil {
		return w, invalid("Invalid value %s for cpuset cpus: %v", r.CpusetCpus, err)
	}
	if !ok {
		return w, invalid("Requested CPUs are not available - requested %s, available: %s", r.CpusetCpus, h.Cpus)
	}
	ok, err = h.IsCpusetMemsAvailable(r.CpusetMems)
	if err != nil {
		return w, invalid("Invalid value %s for cpuset mems: %v", r.CpusetMems, err)
	}
	if !ok {
		return w, invalid("Requested memory nodes are not available - requested %s, available: %s", r.CpusetMems, h.Mems)
	}
	return w, nil
}

func checkBlkio(r *container.Resources, h *Host) (w []string, err error) {
	if r.BlkioWeight > 0 && !h.BlkioWeight {
		w = append(w, "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
		r.BlkioWeight = 0
	}
	if r.BlkioWeight > 0 && (r.BlkioWeight < 10 || r.BlkioWeight > 1000) {
		return w, invalid("Range of blkio weight is from 10 to 1000")
	}
	if r.IOMaximumBandwidth != 0 || r.IOMaximumIOps != 0 {
		return w, invalid("Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps")
	}
	if len(r.BlkioWeightDevice) > 0 && !h.BlkioWeightDevice {
		w = append(w, "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.")
		r.BlkioWeightDevice = nil
	}
	for _, t := range []struct {
		devs *[]*blkiodev.ThrottleDevice
		ok   bool
		msg  string
	}{
		{&r.BlkioDeviceReadBps, h.BlkioReadBpsDevice, "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded."},
		{&r.BlkioDeviceWriteBps, h.BlkioWriteBpsDevice, "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded."},
		{&r.BlkioDeviceReadIOps, h.BlkioReadIOpsDevice, "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded."},
		{&r.BlkioDeviceWriteIOps, h.BlkioWriteIOpsDevice, "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded."},
	} {
		if len(*t.devs) > 0 && !t.ok {
			w = append(w, t.msg)
			*t.devs = nil
		}
	}
	return w, nil
}

// Spec returns the OCI resources r asks for (no device rules: the spec's
// own stay). Block devices are resolved to major:minor here, in the
// daemon's mount namespace, as dockerd does; a path that is not a block
// device is refused.
func Spec(r container.Resources) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	m := &specs.LinuxMemory{}
	if r.Memory > 0 {
		m.Limit = ptr(r.Memory)
	}
	if r.MemoryReservation > 0 {
		m.Reservation = ptr(r.MemoryReservation)
	}
	if r.MemorySwap != 0 {
		m.Swap = ptr(r.MemorySwap)
	}
	if s := r.MemorySwappiness; s != nil && *s >= 0 {
		m.Swappiness = ptr(uint64(*s))
	}
	if r.OomKillDisable != nil {
		m.DisableOOMKiller = ptr(*r.OomKillDisable)
	}
	if *m != (specs.LinuxMemory{}) {
		out.Memory = m
	}
	c := &specs.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}
	if r.CPUShares > 0 {
		c.Shares = ptr(uint64(r.CPUShares))
	}
	if r.NanoCPUs > 0 {
		// --cpus N is a quota of N periods per 100 ms period, as dockerd.
		c.Period = ptr(uint64(DefaultCPUPeriod))
		c.Quota = ptr(r.NanoCPUs * DefaultCPUPeriod / 1e9)
	}
	if r.CPUPeriod != 0 {
		c.Period = ptr(uint64(r.CPUPeriod))
	}
	if r.CPUQuota != 0 {
		c.Quota = ptr(r.CPUQuota)
	}
	if r.CPURealtimePeriod != 0 {
		c.RealtimePeriod = ptr(uint64(r.CPURealtimePeriod))
	}
	if r.CPURealtimeRuntime != 0 {
		c.RealtimeRuntime = ptr(r.CPURealtimeRuntime)
	}
	if *c != (specs.LinuxCPU{}) {
		out.CPU = c
	}
	if r.PidsLimit != nil {
		// -1 is "max": an update back to unlimited must reach the cgroup.
		out.Pids = &specs.LinuxPids{Limit: ptr(max(*r.PidsLimit, -1))}
		if *r.PidsLimit == 0 {
			out.Pids.Limit = ptr(int64(-1))
		}
	}
	b, err := blockIO(r)
	if err != nil {
		return nil, err
	}
	out.BlockIO = b
	return out, nil
}

// blockIO is the blkio part of Spec, nil when r sets none.
func blockIO(r container.Resources) (*specs.LinuxBlockIO, error) {
	b := &specs.LinuxBlockIO{}
	set := false
	if r.BlkioWeight > 0 {
		b.Weight, set = ptr(r.BlkioWeight), true
	}
	for _, wd := range r.BlkioWeightDevice {
		major, minor, err := blockDevice("--blkio-weight-device", wd.Path)
		if err != nil {
			return nil, err
		}
		d := specs.LinuxWeightDevice{Weight: ptr(wd.Weight)}
		d.Major, d.Minor = major, minor
		b.WeightDevice, set = append(b.WeightDevice, d), true
	}
	for _, t := range []struct {
		flag string
		devs []*blkiodev.ThrottleDevice
		out  *[]specs.LinuxThrottleDevice
	}{
		{"--device-read-bps", r.BlkioDeviceReadBps, &b.ThrottleReadBpsDevice},
		{"--device-write-bps", r.BlkioDeviceWriteBps, &b.ThrottleWriteBpsDevice},
		{"--device-read-iops", r.BlkioDeviceReadIOps, &b.ThrottleReadIOPSDevice},
		{"--device-write-iops", r.BlkioDeviceWriteIOps, &b.ThrottleWriteIOPSDevice},
	} {
		for _, d := range t.devs {
			if d == nil {
				continue
			}
			major, minor, err := blockDevice(t.flag, d.Path)
			if err != nil {
				return nil, err
			}
			td := specs.LinuxThrottleDevice{Rate: d.Rate}
			td.Major, td.Minor = major, minor
			*t.out, set = append(*t.out, td), true
		}
	}
	if !set {
		return nil, nil
	}
	return b, nil
}

// blockDevice resolves path to a block device's numbers.
func blockDevice(flag, path string) (major, minor int64, err error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, 0, invalid("%s %s: %v; give the path of a block device on the daemon's host, e.g. /dev/sda", flag, path, &os.PathError{Op: "stat", Path: path, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return 0, 0, invalid("%s %s: not a block device; the block I/O limits apply to block devices only, e.g. /dev/sda", flag, path)
	}
	return int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev)), nil
}

func ptr[T any](v T) *T { return &v }
