package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Container is one running container a scrape reports.
type Container struct {
	ID, Name string
	// Cgroup is the container's cgroup path relative to the hierarchies'
	// roots, e.g. /layerlab/ID.
	Cgroup string
}

// Containers registers a collector that, at every scrape, asks list for
// the running containers and reads their cgroups.
func (m *Metrics) Containers(list func() []Container) {
	m.reg.MustRegister(newContainerCollector(list))
}

type containerCollector struct {
	list                                        func() []Container
	fs                                          cgroupFS
	cpu, mem, limit, blkioBytes, blkioIOs, pids *prometheus.Desc
}

func newContainerCollector(list func() []Container) *containerCollector {
	desc := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "container", name), help, append([]string{"id", "name"}, extra...), nil)
	}
	return &containerCollector{
		list:       list,
		fs:         findCgroups(),
		cpu:        desc("cpu_seconds_total", "CPU time the container's processes used (cgroup cpuacct.usage or cpu.stat usage_usec)."),
		mem:        desc("memory_usage_bytes", "Memory the container's cgroup charges, page cache included (memory.usage_in_bytes or memory.current)."),
		limit:      desc("memory_limit_bytes", "The container's memory limit; absent when it has none."),
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
	for _, ctr := range c.list() {
		u := c.fs.read(ctr.Cgroup)
		if !u.any() {
			continue
		}
		send := func(d *prometheus.Desc, t prometheus.ValueType, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, t, v, append([]string{ctr.ID, ctr.Name}, extra...)...)
		}
		if u.cpuOK {
			send(c.cpu, prometheus.CounterValue, u.cpuSeconds)
		}
		if u.memOK {
			send(c.mem, prometheus.GaugeValue, float64(u.memory))
		}
		if u.limitOK {
			send(c.limit, prometheus.GaugeValue, float64(u.limit))
		}
		if u.blkioOK {
			send(c.blkioBytes, prometheus.CounterValue, float64(u.readBytes), "read")
			send(c.blkioBytes, prometheus.CounterValue, float64(u.wBytes), "write")
			send(c.blkioIOs, prometheus.CounterValue, float64(u.readIOs), "read")
			send(c.blkioIOs, prometheus.CounterValue, float64(u.writeIOs), "write")
		}
		if u.pidsOK {
			send(c.pids, prometheus.GaugeValue, float64(u.pids))
		}
	}
}
