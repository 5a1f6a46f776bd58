// Package stats reads a container's resource usage for docker stats in
// the API 1.41 shape (container.StatsResponse): CPU, memory, block I/O
// and pids from its cgroup, v1 (each controller on its own mount, as on
// this host) or v2 (the qemu guest), and network counters from its
// network namespace's /proc/PID/net/dev. It reads the cgroup files
// directly, a dozen small reads per container and no process or cgroup
// manager per call; BenchmarkRead compares it with libcontainer's cgroup
// manager. Sampler remembers earlier readings so a one-off request gets
// a previous CPU reading (precpu_stats) without waiting for one.
package stats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// userHZ is the unit of cpuacct.stat and /proc/stat: USER_HZ, 100 on
// every Linux architecture layerlab builds for.
const userHZ = 100

// Reader reads containers' statistics. It is safe for concurrent use.
type Reader struct {
	v2       string            // the cgroup2 mount of a pure v2 host, else ""
	v1       map[string]string // v1 controller name -> its mount point
	memTotal uint64            // the host's memory: an unlimited container's limit, as dockerd shows it
}

// NewReader finds the cgroup mounts.
func NewReader() (*Reader, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("stats: cgroup mounts: %w", err)
	}
	r := &Reader{v1: map[string]string{}}
	for _, m := range mounts {
		if m.FSType == "cgroup2" {
			if m.Mountpoint == "/sys/fs/cgroup" {
				r.v2 = m.Mountpoint
			}
			continue
		}
		for _, opt := range strings.Split(m.VFSOptions, ",") {
			switch opt {
			case "cpu", "cpuacct", "memory", "blkio", "pids":
				if _, ok := r.v1[opt]; !ok {
					r.v1[opt] = m.Mountpoint
				}
			}
		}
	}
	if len(r.v1) > 0 {
		r.v2 = "" // hybrid: the v2 mount holds no controller we read
	}
	if r.v2 == "" && len(r.v1) == 0 {
		return nil, fmt.Errorf("stats: no cgroup mount found: %w", drivers.ErrUnavailable)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err == nil {
		r.memTotal = uint64(si.Totalram) * uint64(si.Unit)
	}
	return r, nil
}

// Target is what Read needs to know of a container.
type Target struct {
	ID, Name string
	Cgroup   string // its cgroup path below the hierarchies' roots, e.g. /layerlab/<id>
	Pid      int    // its init's host pid, 0 when unknown
	Netns    bool   // it has its own network namespace (not --net host)
}

// Read returns t's statistics now; PreCPUStats is left for the caller.
func (r *Reader) Read(t Target) (container.StatsResponse, error) {
	s := container.StatsResponse{Name: "/" + strings.TrimPrefix(t.Name, "/"), ID: t.ID, Read: time.Now()}
	cpu, err := r.CPU(t.Cgroup)
	if err != nil {
		return s, err
	}
	s.CPUStats = cpu
	if r.v2 != "" {
		r.readV2(&s, filepath.Join(r.v2, t.Cgroup))
	} else {
		r.readV1(&s, t.Cgroup)
	}
	if t.Netns && t.Pid > 0 {
		s.Networks, _ = readNetDev(t.Pid) // a process gone meanwhile: no networks
	}
	return s, nil
}

// CPU reads the container's CPU usage and the host's, the part of a
// reading CPU % is computed from.
func (r *Reader) CPU(cgroup string) (container.CPUStats, error) {
	var c container.CPUStats
	sys, online, err := systemCPU()
	if err != nil {
		return c, err
	}
	c.SystemUsage, c.OnlineCPUs = sys, online
	if r.v2 != "" {
		kv, err := readKV(filepath.Join(r.v2, cgroup, "cpu.stat"))
		if err != nil {
			return c, notRunning(err)
		}
		c.CPUUsage.TotalUsage = kv["usage_usec"] * 1000
		c.CPUUsage.UsageInUsermode = kv["user_usec"] * 1000
		c.CPUUsage.UsageInKernelmode = kv["system_usec"] * 1000
		c.ThrottlingData = container.ThrottlingData{Periods: kv["nr_periods"], ThrottledPeriods: kv["nr_throttled"], ThrottledTime: kv["throttled_usec"] * 1000}
		return c, nil
	}
	acct := filepath.Join(r.v1["cpuacct"], cgroup)
	total, err := readUint(filepath.Join(acct, "cpuacct.usage"))
	if err != nil {
		return c, notRunning(err)
	}
	c.CPUUsage.TotalUsage = total
	if data, err := os.ReadFile(filepath.Join(acct, "cpuacct.usage_percpu")); err == nil {
		for _, f := range strings.Fields(string(data)) {
			n, _ := strconv.ParseUint(f, 10, 64)
			c.CPUUsage.PercpuUsage = append(c.CPUUsage.PercpuUsage, n)
		}
	}
	if kv, err := readKV(filepath.Join(acct, "cpuacct.stat")); err == nil {
		c.CPUUsage.UsageInUsermode = kv["user"] * (1e9 / userHZ)
		c.CPUUsage.UsageInKernelmode = kv["system"] * (1e9 / userHZ)
	}
	if kv, err := readKV(filepath.Join(r.v1["cpu"], cgroup, "cpu.stat")); err == nil {
		c.ThrottlingData = container.ThrottlingData{Periods: kv["nr_periods"], ThrottledPeriods: kv["nr_throttled"], ThrottledTime: kv["throttled_time"]}
	}
	return c, nil
}

// ErrNoCgroup is a container without a cgroup: it does not run.
var ErrNoCgroup = fmt.Errorf("container has no cgroup (not running): %w", drivers.ErrFailedPrecondition)

func notRunning(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNoCgroup, err)
	}
	return err
}

func (r *Reader) readV1(s *container.StatsResponse, cgroup string) {
	mem := filepath.Join(r.v1["memory"], cgroup)
	m := &s.MemoryStats
	m.Usage, _ = readUint(filepath.Join(mem, "memory.usage_in_bytes"))
	m.MaxUsage, _ = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	m.Failcnt, _ = readUint(filepath.Join(mem, "memory.failcnt"))
	m.Limit, _ = readUint(filepath.Join(mem, "memory.limit_in_bytes"))
	m.Stats, _ = readKV(filepath.Join(mem, "memory.stat"))
	if r.memTotal > 0 && m.Limit > r.memTotal {
		m.Limit = r.memTotal // unlimited: the host's memory, as dockerd
	}
	blk := filepath.Join(r.v1["blkio"], cgroup)
	s.BlkioStats.IoServiceBytesRecursive = readBlkioV1(filepath.Join(blk, "blkio.throttle.io_service_bytes_recursive"))
	s.BlkioStats.IoServicedRecursive = readBlkioV1(filepath.Join(blk, "blkio.throttle.io_serviced_recursive"))
	r.readPids(s, filepath.Join(r.v1["pids"], cgroup))
}

func (r *Reader) readV2(s *container.StatsResponse, dir string) {
	m := &s.MemoryStats
	m.Usage, _ = readUint(filepath.Join(dir, "memory.current"))
	m.MaxUsage, _ = readUint(filepath.Join(dir, "memory.peak"))
	m.Limit = r.memTotal
	if l, err := readUint(filepath.Join(dir, "memory.max")); err == nil {
		m.Limit = l // "max" fails to parse: unlimited
	}
	m.Stats, _ = readKV(filepath.Join(dir, "memory.stat"))
	if data, err := os.ReadFile(filepath.Join(dir, "io.stat")); err == nil {
		s.BlkioStats = parseIOStat(data)
	}
	r.readPids(s, dir)
}

func (r *Reader) readPids(s *container.StatsResponse, dir string) {
	s.PidsStats.Current, _ = readUint(filepath.Join(dir, "pids.current"))
	s.PidsStats.Limit, _ = readUint(filepath.Join(dir, "pids.max")) // "max": 0, unlimited
}

// parseIOStat parses v2's io.stat, "MAJ:MIN rbytes=N wbytes=N rios=N
// wios=N ..." lines, into v1's shape as dockerd does.
func parseIOStat(data []byte) container.BlkioStats {
	var b container.BlkioStats
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		var major, minor uint64
		if _, err := fmt.Sscanf(f[0], "%d:%d", &major, &minor); err != nil {
			continue
		}
		kv := map[string]uint64{}
		for _, p := range f[1:] {
			k, v, _ := strings.Cut(p, "=")
			kv[k], _ = strconv.ParseUint(v, 10, 64)
		}
		b.IoServiceBytesRecursive = append(b.IoServiceBytesRecursive,
			container.BlkioStatEntry{Major: major, Minor: minor, Op: "read", Value: kv["rbytes"]},
			container.BlkioStatEntry{Major: major, Minor: minor, Op: "write", Value: kv["wbytes"]})
		b.IoServicedRecursive = append(b.IoServicedRecursive,
			container.BlkioStatEntry{Major: major, Minor: minor, Op: "read", Value: kv["rios"]},
			container.BlkioStatEntry{Major: major, Minor: minor, Op: "write", Value: kv["wios"]})
	}
	return b
}

// readBlkioV1 reads a v1 blkio file.
func readBlkioV1(path string) []container.BlkioStatEntry {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return parseBlkioV1(data)
}

// parseBlkioV1 parses "MAJ:MIN Op value" lines; the "Total value" line
// is left out, as dockerd leaves it.
func parseBlkioV1(data []byte) []container.BlkioStatEntry {
	var out []container.BlkioStatEntry
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		var e container.BlkioStatEntry
		if _, err := fmt.Sscanf(f[0], "%d:%d", &e.Major, &e.Minor); err != nil {
			continue
		}
		e.Op = f[1]
		e.Value, _ = strconv.ParseUint(f[2], 10, 64)
		out = append(out, e)
	}
	return out
}

// systemCPU reads the host's CPU time in nanoseconds (user to softirq,
// as dockerd sums it) and the number of CPUs from /proc/stat.
func systemCPU() (usage uint64, online uint32, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseProcStat(data)
}

// parseProcStat sums the "cpu" line of /proc/stat and counts the cpuN lines.
func parseProcStat(data []byte) (usage uint64, online uint32, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 8 && f[0] == "cpu":
			var ticks uint64
			for _, v := range f[1:8] {
				n, _ := strconv.ParseUint(v, 10, 64)
				ticks += n
			}
			usage = ticks * (1e9 / userHZ)
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			online++
		}
	}
	if usage == 0 {
		return 0, 0, errors.New("/proc/stat: no cpu line")
	}
	return usage, online, nil
}

// readNetDev reads the interfaces of pid's network namespace from
// /proc/PID/net/dev, lo left out as dockerd reports only the container's
// endpoints.
func readNetDev(pid int) (map[string]container.NetworkStats, error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "net", "dev"))
	if err != nil {
		return nil, err
	}
	return parseNetDev(data), nil
}

// parseNetDev parses /proc/net/dev, lo left out.
func parseNetDev(data []byte) map[string]container.NetworkStats {
	out := map[string]container.NetworkStats{}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if !ok || name == "lo" || len(f) < 16 {
			continue
		}
		var n [16]uint64
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		out[name] = container.NetworkStats{RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDropped: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDropped: n[11]}
	}
	return out
}

func readUint(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
}

// readKV reads a cgroup file of "key value" lines.
func readKV(path string) (map[string]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKV(data), nil
}

// parseKV parses "key value" lines; lines whose value is no number are
// left out.
func parseKV(data []byte) map[string]uint64 {
	out := map[string]uint64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[k] = n
		}
	}
	return out
}
