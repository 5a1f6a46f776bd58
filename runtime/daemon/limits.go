package daemon

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/executor"
	"github.com/layerlab/layerlab/runtime/limits"
)

// hostLimits is what this host's cgroups can limit, probed on first use
// (a few dozen stats of cgroup files) and kept: the daemon's cgroup
// mounts do not change while it runs.
type hostLimits struct {
	once sync.Once
	h    *limits.Host
}

func (p *hostLimits) get() *limits.Host {
	p.once.Do(func() { p.h = limits.Probe() })
	return p.h
}

// checkResources fills in dockerd's defaults for a create's limits,
// validates them and resolves their devices, and returns dockerd's
// warnings for what the host cannot limit (those are dropped from hc).
func (d *Daemon) checkResources(hc *container.HostConfig) ([]string, error) {
	// dockerd's default cgroup namespace: private on cgroup v2, so the
	// container's /sys/fs/cgroup is its own cgroup; the host's on v1.
	switch {
	case hc.CgroupnsMode.IsEmpty() && limits.Cgroup2():
		hc.CgroupnsMode = container.CgroupnsModePrivate
	case hc.CgroupnsMode.IsEmpty():
		hc.CgroupnsMode = container.CgroupnsModeHost
	case !hc.CgroupnsMode.IsPrivate() && !hc.CgroupnsMode.IsHost():
		return nil, fmt.Errorf("invalid cgroup namespace mode: %v (want private or host): %w", hc.CgroupnsMode, drivers.ErrInvalidArgument)
	}
	h := d.limits.get()
	limits.Defaults(&hc.Resources, h)
	warnings, err := limits.Check(&hc.Resources, h, false)
	if err != nil {
		return nil, err
	}
	if _, err := limits.Spec(hc.Resources); err != nil {
		return nil, err
	}
	return warnings, nil
}

// withResources puts hc's limits into s, keeping s's device rules, and
// gives the container a cgroup namespace of its own when hc asks (the
// default on v2).
func withResources(s *specs.Spec, hc *container.HostConfig) error {
	if hc.CgroupnsMode.IsPrivate() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	res, err := limits.Spec(hc.Resources)
	if err != nil {
		return err
	}
	if s.Linux.Resources != nil {
		res.Devices = s.Linux.Resources.Devices
	}
	devs, rules, err := limits.Devices(hc.Resources)
	if err != nil {
		return err
	}
	s.Linux.Devices = append(s.Linux.Devices, devs...)
	res.Devices = append(res.Devices, rules...)
	s.Linux.Resources = res
	rl, err := limits.Rlimits(hc.Resources)
	if err != nil {
		return err
	}
	s.Process.Rlimits = append(s.Process.Rlimits, rl...)
	return nil
}

// UpdateContainer answers POST /containers/{id}/update (docker update):
// the limits merge into the record's as dockerd merges them, a running
// (or paused) container's cgroup gets them at once, and the restart
// policy changes when one is given.
func (d *Daemon) UpdateContainer(ctx context.Context, ref string, upd container.UpdateConfig) (container.UpdateResponse, error) {
	out := container.UpdateResponse{Warnings: []string{}}
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return out, err
	}
	// Under the container's lock, read again: a start meanwhile would
	// build its spec from a record this update has not reached, and two
	// updates at once would each merge into the same old limits.
	l := d.live(r.ID)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r, err = d.ctrs.Get(r.ID); err != nil {
		return out, err
	}
	hc := *r.HostConfig
	if err := limits.Merge(&hc.Resources, upd.Resources); err != nil {
		return out, fmt.Errorf("Cannot update container %s: %w", r.ID, err)
	}
	warnings, err := limits.Check(&hc.Resources, d.limits.get(), true)
	if err != nil {
		return out, fmt.Errorf("Cannot update container %s: %w", r.ID, err)
	}
	out.Warnings = append(out.Warnings, warnings...)
	if upd.RestartPolicy.Name != "" {
		if !upd.RestartPolicy.IsNone() && hc.AutoRemove {
			return out, fmt.Errorf("Cannot update container %s: Restart policy cannot be updated because AutoRemove is enabled for the container: %w", r.ID, drivers.ErrFailedPrecondition)
		}
		hc.RestartPolicy = upd.RestartPolicy
		if err := validateRestartPolicy(&hc); err != nil {
			return out, err
		}
	}
	res, err := limits.Spec(hc.Resources)
	if err != nil {
		return out, err
	}
	if l.c != nil {
		// A container that ended meanwhile (finish has not cleared l.c
		// yet) has no cgroup left: its record takes the limits, for its
		// next start, as for a stopped one.
		if err := l.c.Update(ctx, res); err != nil && !ended(l.c) {
			return out, fmt.Errorf("Cannot update container %s: %w", r.ID, err)
		}
	}
	r, err = d.ctrs.Update(r.ID, func(rec *containers.Record) error {
		rec.HostConfig.Resources, rec.HostConfig.RestartPolicy = hc.Resources, hc.RestartPolicy
		return nil
	})
	if err != nil {
		return out, err
	}
	d.containerEvent(r, eventtypes.ActionUpdate, nil)
	return out, nil
}

// ended reports whether c's init has exited (a Wait that returns at once;
// a running one is given 100 ms).
func ended(c executor.Container) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Wait(ctx)
	return err == nil
}
