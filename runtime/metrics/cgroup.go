package metrics

import (
	"bufio"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
)

// usage is what one scrape reads of a container's cgroup. A field whose
// file could not be read is left out of the scrape (ok flags).
type usage struct {
	cpuSeconds        float64
	memory, limit     uint64
	readBytes, wBytes uint64
	readIOs, writeIOs uint64
	pids              uint64
	cpuOK, memOK      bool
	limitOK, blkioOK  bool
	pidsOK            bool
}

// any reports whether anything was read: a container whose cgroup went
// away between the listing and the read is left out of the scrape.
func (u usage) any() bool { return u.cpuOK || u.memOK || u.blkioOK || u.pidsOK }

// cgroupFS says where each controller a scrape reads is mounted: the
// unified hierarchy on a cgroup v2 host (the qemu guest), else one v1
// hierarchy per controller (this host is hybrid: its v2 mount holds only
// hugetlb). libcontainer and runc put a container's cgroup at the same
// relative path in every hierarchy.
//
// The stats are read here, a few files per container, rather than with
// opencontainers/cgroups' managers: their GetStats reads every stat file
// of every controller (tens per container), which a scrape of 50
// containers cannot afford in its 50 ms. The library's file helpers parse
// what is read.
type cgroupFS struct {
	v2                           string // the unified mount, "" on a v1 or hybrid host
	cpuacct, memory, blkio, pids string
}

// findCgroups locates the hierarchies. A v1 controller that is not
// mounted is left "" and its metrics are not reported.
func findCgroups() cgroupFS {
	if cgroups.IsCgroup2UnifiedMode() {
		return cgroupFS{v2: "/sys/fs/cgroup"}
	}
	var fs cgroupFS
	for ss, dst := range map[string]*string{"cpuacct": &fs.cpuacct, "memory": &fs.memory, "blkio": &fs.blkio, "pids": &fs.pids} {
		if mp, err := cgroups.FindCgroupMountpoint("", ss); err == nil {
			*dst = mp
		}
	}
	return fs
}

// read reads the cgroup at path (relative to the hierarchies' roots,
// e.g. /layerlab/ID). A container whose cgroup is gone (it just exited)
// reads as nothing.
func (fs cgroupFS) read(path string) usage {
	if fs.v2 != "" {
		return readV2(filepath.Join(fs.v2, path))
	}
	var u usage
	if fs.cpuacct != "" {
		if ns, err := fscommon.GetCgroupParamUint(filepath.Join(fs.cpuacct, path), "cpuacct.usage"); err == nil {
			u.cpuSeconds, u.cpuOK = float64(ns)/1e9, true
		}
	}
	if fs.memory != "" {
		dir := filepath.Join(fs.memory, path)
		u.memory, u.memOK = readUint(dir, "memory.usage_in_bytes")
		// v1 says "no limit" with a page-rounded huge number.
		if l, ok := readUint(dir, "memory.limit_in_bytes"); ok && l < math.MaxInt64/2 {
			u.limit, u.limitOK = l, true
		}
	}
	if fs.blkio != "" {
		if data, err := cgroups.ReadFile(filepath.Join(fs.blkio, path), "blkio.throttle.io_service_bytes_recursive"); err == nil {
			u.readBytes, u.wBytes = blkioV1(data)
			u.blkioOK = true
		}
		if data, err := cgroups.ReadFile(filepath.Join(fs.blkio, path), "blkio.throttle.io_serviced_recursive"); err == nil {
			u.readIOs, u.writeIOs = blkioV1(data)
		}
	}
	if fs.pids != "" {
		u.pids, u.pidsOK = readUint(filepath.Join(fs.pids, path), "pids.current")
	}
	return u
}

func readV2(dir string) usage {
	var u usage
	if us, err := fscommon.GetValueByKey(dir, "cpu.stat", "usage_usec"); err == nil {
		u.cpuSeconds, u.cpuOK = float64(us)/1e6, true
	}
	u.memory, u.memOK = readUint(dir, "memory.current")
	// "max" parses as MaxUint64: no limit.
	if l, ok := readUint(dir, "memory.max"); ok && l != math.MaxUint64 {
		u.limit, u.limitOK = l, true
	}
	if data, err := cgroups.ReadFile(dir, "io.stat"); err == nil {
		u.readBytes, u.wBytes, u.readIOs, u.writeIOs = ioStatV2(data)
		u.blkioOK = true
	}
	u.pids, u.pidsOK = readUint(dir, "pids.current")
	return u
}

func readUint(dir, file string) (uint64, bool) {
	n, err := fscommon.GetCgroupParamUint(dir, file)
	if err != nil {
		return 0, false
	}
	return n, true
}

// blkioV1 sums a v1 blkio list ("MAJ:MIN Read N" lines, and a Total)
// over the devices.
func blkioV1(data string) (read, write uint64) {
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			continue
		}
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write
}

// ioStatV2 sums v2's io.stat ("MAJ:MIN rbytes=N wbytes=N rios=N wios=N
// ...") over the devices.
func ioStatV2(data string) (rbytes, wbytes, rios, wios uint64) {
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "rbytes":
				rbytes += n
			case "wbytes":
				wbytes += n
			case "rios":
				rios += n
			case "wios":
				wios += n
			}
		}
	}
	return
}
