package metrics

import (
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/prometheus/client_golang/prometheus"
)

// Container is one running container a scrape reports.
type Container struct {
	ID, Name string
}

// ContainerSource lists the running containers and reads one's cgroup
// figures (the same reader docker stats uses: runtime/stats); a container
// that ended meanwhile reads as an error and is left out.
type ContainerSource struct {
	List func() []Container
	Read func(Container) (container.StatsResponse, error)
}

// Containers registers a collector that, at every scrape, reads the
// running containers' cgroups through src.
func (m *Metrics) Containers(src ContainerSource) {
	m.reg.MustRegister(newContainerCollector(src))
}

type containerCollector struct {
	src                                         ContainerSource
	cpu, mem, limit, blkioBytes, blkioIOs, pids *prometheus.Desc
}

func newContainerCollector(src ContainerSource) *containerCollector {
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "container", name), help, append([]string{"id", "name"}, extra...), nil)
	}
	return &containerCollector{
		src:        src,
		cpu:        desc("cpu_seconds_total", "CPU time the container's processes used (cgroup cpuacct.usage or cpu.stat usage_usec)."),
		mem:        desc("memory_usage_bytes", "Memory the container's cgroup charges, page cache included (memory.usage_in_bytes or memory.current)."),
		limit:      desc("memory_limit_bytes", "The container's memory limit; the host's memory when it has none, as docker stats shows."),
		blkioBytes: desc("blkio_bytes_total", "Bytes the container read and wrote on block devices, summed over devices.", "op"),
		blkioIOs:   desc("blkio_ios_total", "Block I/O requests the container made, summed over devices.", "op"),
		pids:       desc("pids", "Processes and threads in the container's cgroup."),
	}
}

func (c *containerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.cpu, c.mem, c.limit, c.blkioBytes, c.blkioIOs, c.pids} {
		ch <- d
	}
}

func (c *containerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ctr := range c.src.List() {
		s, err := c.src.Read(ctr)
		if err != nil {
			continue
		}
		send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, t, v, append([]string{ctr.ID, ctr.Name}, extra...)...)
		}
		send(c.cpu, prometheus.CounterValue, float64(s.CPUStats.CPUUsage.TotalUsage)/1e9)
		send(c.mem, prometheus.GaugeValue, float64(s.MemoryStats.Usage))
		if s.MemoryStats.Limit > 0 {
			send(c.limit, prometheus.GaugeValue, float64(s.MemoryStats.Limit))
		}
		rb, wb := sumOps(s.BlkioStats.IoServiceBytesRecursive)
		ri, wi := sumOps(s.BlkioStats.IoServicedRecursive)
		send(c.blkioBytes, prometheus.CounterValue, float64(rb), "read")
		send(c.blkioBytes, prometheus.CounterValue, float64(wb), "write")
		send(c.blkioIOs, prometheus.CounterValue, float64(ri), "read")
		send(c.blkioIOs, prometheus.CounterValue, float64(wi), "write")
		send(c.pids, prometheus.GaugeValue, float64(s.PidsStats.Current))
	}
}

// sumOps sums the read and write entries over devices (v1 names them
// Read/Write, the v2 translation read/write).
func sumOps(entries []container.BlkioStatEntry) (read, write uint64) {
	for _, e := range entries {
		switch strings.ToLower(e.Op) {
		case "read":
			read += e.Value
		case "write":
			write += e.Value
		}
	}
	return read, write
}
