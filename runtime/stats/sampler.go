package stats

import (
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
)

// Window is how far apart two CPU readings should be for a CPU %:
// /proc/stat counts in 10 ms ticks, so closer readings say little.
const Window = 500 * time.Millisecond

// Sampler remembers each running container's recent CPU readings, so a
// one-off stats request (docker stats --no-stream) gets a previous
// reading to compute CPU % against at once, where dockerd waits a second
// for a second reading. Every container gets a first reading when it
// starts (Started); while stats are asked for, a goroutine reads every
// watched container's CPU each Interval, and it stops once nobody asked
// for IdleStop. A Sampler's zero value is not usable: use NewSampler.
type Sampler struct {
	r        *Reader
	interval time.Duration
	idle     time.Duration

	mu      sync.Mutex
	watched map[string]*watch // by container ID
	asked   time.Time         // the last Previous call
	running bool              // the goroutine runs
	closed  bool              // Close: no goroutine starts any more
	done    chan struct{}     // closed by Close, ends the goroutine
	stopped chan struct{}     // closed by the goroutine as it ends
}

type watch struct {
	cgroup string
	// Two readings, older first: Previous picks the newer one that is at
	// least Window old.
	old, last reading
}

type reading struct {
	cpu container.CPUStats
	at  time.Time
}

// NewSampler returns a sampler reading through r every interval while
// asked, stopping after idle without a request.
func NewSampler(r *Reader, interval, idle time.Duration) *Sampler {
	return &Sampler{r: r, interval: interval, idle: idle, watched: map[string]*watch{}, done: make(chan struct{})}
}

// Close stops the sampling goroutine and waits for it to end; Previous
// still answers from what was kept.
func (s *Sampler) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	stopped := s.stopped
	s.mu.Unlock()
	if stopped != nil {
		<-stopped
	}
}

// Started records the first reading of a container that just started:
// its cgroup's CPU usage (about zero) and the host's at that moment.
func (s *Sampler) Started(id, cgroup string) {
	cpu, err := s.r.CPU(cgroup)
	if err != nil {
		return
	}
	rd := reading{cpu: cpu, at: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watched[id] = &watch{cgroup: cgroup, old: rd, last: rd}
}

// Stopped forgets a container that no longer runs.
func (s *Sampler) Stopped(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.watched, id)
}

// Previous returns the reading of container id to compute a reading made
// now against, and when it was made: the newest one at least Window old,
// else the oldest kept. ok is false for a container the sampler does not
// watch. It starts the sampling goroutine when it does not run.
func (s *Sampler) Previous(id string) (cpu container.CPUStats, at time.Time, ok bool) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = now
	if !s.running && !s.closed {
		s.running = true
		s.stopped = make(chan struct{})
		go s.loop(s.stopped)
	}
	w := s.watched[id]
	if w == nil {
		return cpu, at, false
	}
	if now.Sub(w.last.at) >= Window {
		return w.last.cpu, w.last.at, true
	}
	return w.old.cpu, w.old.at, true
}

// loop reads every watched container's CPU each interval until nobody
// asked for idle.
func (s *Sampler) loop(stopped chan struct{}) {
	defer close(stopped)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if time.Since(s.asked) > s.idle {
			s.running = false
			s.mu.Unlock()
			return
		}
		cgroups := make(map[string]string, len(s.watched))
		for id, w := range s.watched {
			cgroups[id] = w.cgroup
		}
		s.mu.Unlock()
		// Read without the lock: requests go on meanwhile.
		readings := make(map[string]reading, len(cgroups))
		for id, cg := range cgroups {
			if cpu, err := s.r.CPU(cg); err == nil {
				readings[id] = reading{cpu: cpu, at: time.Now()}
			}
		}
		s.mu.Lock()
		for id, rd := range readings {
			if w := s.watched[id]; w != nil {
				w.old, w.last = w.last, rd
			}
		}
		s.mu.Unlock()
	}
}
