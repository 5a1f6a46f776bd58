// Package health is the logic of container health checks (HEALTHCHECK,
// docker run --health-*) as dockerd applies it: the settings merged from
// the image and the create request and checked, the probe's command, the
// wait before each probe, and what a probe's result does to the state
// (starting, healthy, unhealthy; the failing streak; the last five
// results, each output capped at 4 KiB). The daemon runs the probes; every
// function here takes the times it needs, so tests need no clock.
package health

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// dockerd's defaults for what a healthcheck leaves at zero.
const (
	DefaultInterval      = 30 * time.Second
	DefaultTimeout       = 30 * time.Second
	DefaultStartPeriod   = 0
	DefaultStartInterval = 5 * time.Second
	DefaultRetries       = 3
	// MaxLog results are kept, oldest first; MaxOutput bytes of each
	// probe's output.
	MaxLog    = 5
	MaxOutput = 4096
)

// The statuses, as the API names them.
const (
	None      = container.NoHealthcheck
	Starting  = container.Starting
	Healthy   = container.Healthy
	Unhealthy = container.Unhealthy
)

// Merge is the container's healthcheck: the request's, with what it
// leaves at zero taken from the image's, as dockerd merges them. Neither
// argument is changed; nil when both are nil.
func Merge(req, image *container.HealthConfig) *container.HealthConfig {
	if req == nil {
		if image == nil {
			return nil
		}
		c := *image
		c.Test = slices.Clone(image.Test)
		return &c
	}
	c := *req
	c.Test = slices.Clone(req.Test)
	if image == nil {
		return &c
	}
	if len(c.Test) == 0 {
		c.Test = slices.Clone(image.Test)
	}
	if c.Interval == 0 {
		c.Interval = image.Interval
	}
	if c.Timeout == 0 {
		c.Timeout = image.Timeout
	}
	if c.StartPeriod == 0 {
		c.StartPeriod = image.StartPeriod
	}
	if c.StartInterval == 0 {
		c.StartInterval = image.StartInterval
	}
	if c.Retries == 0 {
		c.Retries = image.Retries
	}
	return &c
}

// Validate refuses what dockerd refuses at create, in its words (a
// duration under 1ms other than zero, which means the default; negative
// retries), and a test that names no known kind or no command, which
// dockerd only logs when the probe would run. Errors wrap
// drivers.ErrInvalidArgument.
func Validate(c *container.HealthConfig) error {
	if c == nil {
		return nil
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", c.Interval}, {"Timeout", c.Timeout}} {
		if d.v != 0 && d.v < container.MinimumDuration {
			return fmt.Errorf("%s in Healthcheck cannot be less than %s: %w", d.name, container.MinimumDuration, drivers.ErrInvalidArgument)
		}
	}
	if c.Retries < 0 {
		return fmt.Errorf("Retries in Healthcheck cannot be negative: %w", drivers.ErrInvalidArgument)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"StartPeriod", c.StartPeriod}, {"StartInterval", c.StartInterval}} {
		if d.v != 0 && d.v < container.MinimumDuration {
			return fmt.Errorf("%s in Healthcheck cannot be less than %s: %w", d.name, container.MinimumDuration, drivers.ErrInvalidArgument)
		}
	}
	if len(c.Test) == 0 {
		return nil // inherits the image's
	}
	switch c.Test[0] {
	case "NONE":
		return nil
	case "CMD", "CMD-SHELL":
		if len(c.Test) < 2 || strings.TrimSpace(strings.Join(c.Test[1:], "")) == "" {
			return fmt.Errorf("Healthcheck test %q has no command: give one after %s: %w", c.Test, c.Test[0], drivers.ErrInvalidArgument)
		}
		return nil
	}
	return fmt.Errorf("Healthcheck test %q: the first word must be CMD, CMD-SHELL or NONE: %w", c.Test, drivers.ErrInvalidArgument)
}

// Command is the probe's argv: a CMD test's arguments, or a CMD-SHELL
// test's command under shell (/bin/sh -c when empty). Nil when nothing
// is to be probed: no healthcheck, NONE, or a test of no known kind.
func Command(c *container.HealthConfig, shell []string) []string {
	if c == nil || len(c.Test) < 2 {
		return nil
	}
	switch c.Test[0] {
	case "CMD":
		return slices.Clone(c.Test[1:])
	case "CMD-SHELL":
		if len(shell) == 0 {
			shell = []string{"/bin/sh", "-c"}
		}
		return append(slices.Clone(shell), c.Test[1:]...)
	}
	return nil
}

// Settings are a healthcheck's timings and retries with the defaults
// filled in.
type Settings struct {
	Interval, Timeout, StartPeriod, StartInterval time.Duration
	Retries                                       int
}

// Effective fills in dockerd's defaults for what c leaves at zero.
func Effective(c *container.HealthConfig) Settings {
	s := Settings{Interval: DefaultInterval, Timeout: DefaultTimeout, StartPeriod: DefaultStartPeriod,
		StartInterval: DefaultStartInterval, Retries: DefaultRetries}
	if c == nil {
		return s
	}
	for _, f := range []struct {
		v   time.Duration
		out *time.Duration
	}{
		{c.Interval, &s.Interval}, {c.Timeout, &s.Timeout}, {c.StartPeriod, &s.StartPeriod}, {c.StartInterval, &s.StartInterval},
	} {
		if f.v > 0 {
			*f.out = f.v
		}
	}
	if c.Retries > 0 {
		s.Retries = c.Retries
	}
	return s
}

// Delay is how long the monitor waits before its next probe, at now, for
// a container started at started whose health is status: the start
// interval while the start period runs and the container is still
// starting, else the interval. The first probe too comes after one
// delay, as in dockerd.
func (s Settings) Delay(started, now time.Time, status string) time.Duration {
	if now.Sub(started) < s.StartPeriod && status == Starting {
		return s.StartInterval
	}
	return s.Interval
}

// Begin is the health of a container that starts (or restarts) with a
// probe: starting, no failing streak, the earlier results kept.
func Begin(prev *container.Health) *container.Health {
	h := &container.Health{Status: Starting}
	if prev != nil {
		h.Log = slices.Clone(prev.Log)
	}
	return h
}

// Record applies a probe's result to h, for a container started at
// started: the result joins the log (the oldest dropped past MaxLog); exit
// code 0 makes it healthy and ends the failing streak; any other result
// counts one more failure, except for a container still starting whose
// probe began within the start period, and the retries-th failure in a
// row makes it unhealthy. It says whether the status changed.
func Record(h *container.Health, s Settings, started time.Time, res container.HealthcheckResult) bool {
	old := h.Status
	log := append(slices.Clone(h.Log), &res)
	if len(log) > MaxLog {
		log = log[len(log)-MaxLog:]
	}
	h.Log = log
	switch {
	case res.ExitCode == 0:
		h.FailingStreak = 0
		h.Status = Healthy
	case h.Status == Starting && res.Start.Sub(started) < s.StartPeriod:
		// Failures while the container starts up do not count.
	default:
		h.FailingStreak++
		if h.FailingStreak >= s.Retries {
			h.Status = Unhealthy
		}
	}
	return h.Status != old
}

// Status is the health a container's record shows: None without one.
func Status(h *container.Health) string {
	if h == nil || h.Status == "" {
		return None
	}
	return h.Status
}

// Text is the health ps appends to a running container's status, as
// dockerd words it: "health: starting", "healthy", "unhealthy".
func Text(h *container.Health) string {
	s := Status(h)
	if s == Starting {
		return "health: starting"
	}
	return s
}

// Output keeps the first MaxOutput bytes written to it, for a probe's
// stdout and stderr; String marks a cut with "...", as dockerd does. It
// is safe for concurrent writers.
type Output struct {
	mu        sync.Mutex
	buf       []byte
	truncated bool
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	room := MaxOutput - len(o.buf)
	if room >= len(p) {
		o.buf = append(o.buf, p...)
	} else {
		o.buf = append(o.buf, p[:max(room, 0)]...)
		o.truncated = true
	}
	return len(p), nil
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.truncated {
		return string(o.buf) + "..."
	}
	return string(o.buf)
}
