package daemon

import (
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/metrics"
	"github.com/layerlab/layerlab/runtime/stats"
)

// instrument wraps an opened driver so its operations are timed, when
// --metrics-addr asked for metrics.
func (d *Daemon) instrument(name string, drv drivers.Driver) drivers.Driver {
	if d.cfg.Metrics == nil {
		return drv
	}
	return d.cfg.Metrics.Instrument(name, drv)
}

// layerApplied counts a layer the image store applied into drv.
func (d *Daemon) layerApplied(drv drivers.Snapshotter, st layer.Stats) {
	if d.cfg.Metrics == nil {
		return
	}
	for name, enabled := range d.drivers {
		if enabled == drv {
			d.cfg.Metrics.Applied(name, st.Bytes)
			return
		}
	}
}

// mountRootfs mounts a container's rootfs, timing it as the driver's
// "mount" operation: the mount(2) calls of the mounts the driver
// described, where overlay's cost with many lower layers shows.
func (d *Daemon) mountRootfs(driver string, mounts []drivers.Mount, dir string) error {
	start := time.Now()
	err := mount.All(mounts, dir)
	if d.cfg.Metrics != nil {
		d.cfg.Metrics.Observe(driver, "mount", time.Since(start).Seconds(), err)
	}
	return err
}

// metricContainers is what a scrape reads of the running (and paused)
// containers: their cgroups, through docker stats' reader.
func (d *Daemon) metricContainers() metrics.ContainerSource {
	return metrics.ContainerSource{
		List: func() []metrics.Container {
			recs, err := d.ctrs.List()
			if err != nil {
				d.cfg.Log.Warn("metrics: listing containers", "err", err)
				return nil
			}
			var out []metrics.Container
			for _, r := range recs {
				if r.State.Status == containers.Running || r.State.Status == containers.Paused {
					out = append(out, metrics.Container{ID: r.ID, Name: r.Name})
				}
			}
			return out
		},
		Read: func(c metrics.Container) (container.StatsResponse, error) {
			reader, _, err := d.stats.get()
			if err != nil {
				return container.StatsResponse{}, err
			}
			return reader.Read(stats.Target{ID: c.ID, Name: c.Name, Cgroup: d.cgroupPath(c.ID)})
		},
	}
}
