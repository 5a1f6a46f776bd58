package daemon

import (
	"context"
	"errors"
	"path"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/executor"
	"github.com/layerlab/layerlab/runtime/stats"
)

// statsInterval is how often a streamed docker stats sends a frame and
// the sampler reads, as dockerd's collector; statsIdle stops the sampler
// when nobody asked for that long.
const (
	statsInterval = time.Second
	statsIdle     = 30 * time.Second
)

// statsState is docker stats' reader and CPU sampler, made on first use.
type statsState struct {
	once    sync.Once
	r       *stats.Reader
	sampler *stats.Sampler
	err     error
}

func (s *statsState) get() (*stats.Reader, *stats.Sampler, error) {
	s.once.Do(func() {
		if s.r, s.err = stats.NewReader(); s.err == nil {
			s.sampler = stats.NewSampler(s.r, statsInterval, statsIdle)
		}
	})
	return s.r, s.sampler, s.err
}

// close stops the sampler's goroutine, if one was made.
func (s *statsState) close() {
	s.once.Do(func() { s.err = errors.New("the daemon is closed") })
	if s.sampler != nil {
		s.sampler.Close()
	}
}

// cgroupPath is where both executors put container id's cgroup.
func (d *Daemon) cgroupPath(id string) string {
	parent := d.cfg.CgroupParent
	if parent == "" {
		parent = executor.DefaultCgroupParent
	}
	return path.Join(parent, id)
}

// statsStarted gives the sampler a container's first CPU reading.
func (d *Daemon) statsStarted(id string) {
	if _, s, err := d.stats.get(); err == nil {
		s.Started(id, d.cgroupPath(id))
	}
}

func (d *Daemon) statsStopped(id string) {
	if _, s, err := d.stats.get(); err == nil {
		s.Stopped(id)
	}
}

// ContainerStats answers GET /containers/{id}/stats: one reading
// (stream false) or one a second until ctx ends. A reading's
// precpu_stats is the sampler's earlier reading, so even a single one
// carries a CPU % without waiting (dockerd waits a second for it);
// oneShot leaves it empty, as dockerd's one-shot does. A container that
// does not run gets readings with only its name and ID, as from dockerd.
func (d *Daemon) ContainerStats(ctx context.Context, ref string, stream, oneShot bool, send func(container.StatsResponse) error) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	reader, sampler, err := d.stats.get()
	if err != nil {
		return err
	}
	t := stats.Target{ID: r.ID, Name: r.Name, Cgroup: d.cgroupPath(r.ID), Pid: r.State.Pid, Netns: r.HostConfig.NetworkMode != "host"}
	var pre *container.StatsResponse
	for {
		s, err := d.readStats(reader, t)
		if err != nil {
			return err
		}
		switch {
		case s.Read.IsZero(): // not running
		case pre != nil && !pre.Read.IsZero():
			s.PreCPUStats, s.PreRead = pre.CPUStats, pre.Read
		case !oneShot:
			if cpu, at, ok := sampler.Previous(r.ID); ok {
				s.PreCPUStats, s.PreRead = cpu, at
			}
		}
		if err := send(s); err != nil || !stream {
			return err
		}
		pre = &s
		select {
		case <-ctx.Done():
			return nil
		case <-d.streamsEnd:
			return nil
		case <-time.After(statsInterval):
		}
	}
}

// readStats reads t, or the empty reading of a container that does not
// run (its Read time zero).
func (d *Daemon) readStats(reader *stats.Reader, t stats.Target) (container.StatsResponse, error) {
	empty := container.StatsResponse{Name: "/" + t.Name, ID: t.ID}
	r, err := d.ctrs.Get(t.ID)
	if err != nil {
		return empty, err
	}
	if r.State.Status != containers.Running && r.State.Status != containers.Paused {
		return empty, nil
	}
	t.Pid = r.State.Pid
	s, err := reader.Read(t)
	if errors.Is(err, stats.ErrNoCgroup) {
		return empty, nil // it ended meanwhile
	}
	return s, err
}
