package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/health"
)

// probeDrain bounds how long a probe's output is still read after the
// probe exited: a child it left behind may hold the pipe open.
const probeDrain = time.Second

// healthMonitor runs the health probes of one run of a container, as
// dockerd's monitor goroutine: started with the run (and again at
// unpause), halted at a stop or pause and at the run's end, which waits
// for it (finish), so no monitor outlives its run.
type healthMonitor struct {
	mu     sync.Mutex // held while a result is recorded, so none lands after halt
	halted bool
	stop   chan struct{} // closed by halt: the wait or the probe under way ends
	done   chan struct{} // closed when the goroutine has returned
	// ended is the run's finished channel: a monitor started as the run
	// ended (a kill racing its exit) ends with it all the same.
	ended <-chan struct{}
}

// halt stops the monitor without waiting for it; nil-safe.
func (m *healthMonitor) halt() {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.halted {
		m.halted = true
		close(m.stop)
	}
}

// wait blocks until the monitor's goroutine returned; nil-safe. Never
// with the container's l.mu held: a probe takes it to start its exec.
func (m *healthMonitor) wait() {
	if m != nil {
		<-m.done
	}
}

// returned says whether the monitor's goroutine has returned (true for
// none).
func (m *healthMonitor) returned() bool {
	if m == nil {
		return true
	}
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// startHealth starts the monitor of the running container r when its
// healthcheck has a probe; l.mu is held. A monitor halted before (at a
// pause) is waited for by the new one before it probes, so finish, which
// waits for the newest, waits for them all.
func (d *Daemon) startHealth(r containers.Record, l *live) {
	cmd := health.Command(r.Config.Healthcheck, r.Config.Shell)
	if cmd == nil {
		return
	}
	if l.c == nil || l.finished == nil {
		return // the run ended meanwhile
	}
	prev := l.health
	prev.halt()
	m := &healthMonitor{stop: make(chan struct{}), done: make(chan struct{}), ended: l.finished}
	l.health = m
	go d.monitorHealth(r.ID, m, prev, health.Effective(r.Config.Healthcheck), r.State.StartedAt, health.Status(r.State.Health), cmd)
}

// endHealth halts the monitor of a run that ended and waits for it; l.mu
// is not held.
func (d *Daemon) endHealth(l *live) {
	l.mu.Lock()
	m := l.health
	l.health = nil
	l.mu.Unlock()
	m.halt()
	m.wait()
}

// monitorHealth probes the container id after each delay until halted,
// recording each result; status is the health the run starts from.
func (d *Daemon) monitorHealth(id string, m, prev *healthMonitor, s health.Settings, started time.Time, status string, cmd []string) {
	defer close(m.done)
	prev.wait()
	timer := time.NewTimer(s.Delay(started, time.Now(), status))
	defer timer.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.ended:
			return
		case <-timer.C:
		}
		res := d.probe(id, cmd, s.Timeout, m.stop)
		var ok bool
		if status, ok = d.recordProbe(id, m, s, res); !ok {
			return
		}
		timer.Reset(s.Delay(started, time.Now(), status))
	}
}

// errRunEnded drops a probe's result that arrives when the container no
// longer runs.
var errRunEnded = errors.New("the container's run ended")

// recordProbe applies a probe's result to the container's record and
// publishes health_status when the status changed. It says false when
// the monitor was halted meanwhile (the result is dropped, as dockerd
// drops it), the run ended or the container is gone.
func (d *Daemon) recordProbe(id string, m *healthMonitor, s health.Settings, res container.HealthcheckResult) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.halted {
		return "", false
	}
	changed := false
	r, err := d.ctrs.Update(id, func(r *containers.Record) error {
		if r.State.Status != containers.Running && r.State.Status != containers.Paused {
			return errRunEnded
		}
		h := health.Begin(nil)
		if r.State.Health != nil {
			c := *r.State.Health
			h = &c
		}
		changed = health.Record(h, s, r.State.StartedAt, res)
		r.State.Health = h
		return nil
	})
	if err != nil {
		if !errors.Is(err, errRunEnded) && !errors.Is(err, containers.ErrNoSuchContainer) {
			d.cfg.Log.Warn("recording a health probe", "container", id, "err", err)
		}
		return "", false
	}
	if changed {
		d.containerEvent(r, eventtypes.Action(string(eventtypes.ActionHealthStatus)+": "+r.State.Health.Status), nil)
	}
	return r.State.Health.Status, true
}

// probe runs cmd once in the container id, as an exec with exec_create,
// exec_start and exec_die events as dockerd's probes have; a probe that
// cannot run is a failure (-1) saying why.
func (d *Daemon) probe(id string, cmd []string, timeout time.Duration, stop <-chan struct{}) container.HealthcheckResult {
	start := time.Now()
	res, err := d.runProbe(id, cmd, timeout, stop)
	if err != nil {
		res = container.HealthcheckResult{ExitCode: -1, Output: err.Error()}
	}
	res.Start, res.End = start, time.Now()
	return res
}

// runProbe is probe's exec: stdout and stderr into one capped buffer,
// SIGKILL at the timeout (a result of -1 saying so, with what it wrote)
// or when stop closes. The exec's record goes once it ended: a probe
// every few seconds would otherwise pile records up for the container's
// lifetime.
func (d *Daemon) runProbe(id string, cmd []string, timeout time.Duration, stop <-chan struct{}) (container.HealthcheckResult, error) {
	var res container.HealthcheckResult
	e, err := d.newExec(id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true}, nil)
	if err != nil {
		return res, err
	}
	defer d.execs.remove(e.id)
	e.mu.Lock()
	e.begun = true
	e.mu.Unlock()
	r, c, err := d.execContainer(e)
	if err != nil {
		return res, err
	}
	proc, stdio, err := d.execProcess(e, true, nil, nil)
	if err != nil {
		return res, err
	}
	// A pipe, not an io.Writer: the exec's wait then ends with the probe
	// process, not with the last process holding its output open.
	pr, pw, err := os.Pipe()
	if err != nil {
		return res, err
	}
	stdio.Stdout, stdio.Stderr = pw, pw
	ctx := context.Background()
	p, err := c.Exec(ctx, proc, stdio)
	if err != nil {
		pw.Close()
		pr.Close()
		code := startFailureCode(err)
		e.mu.Lock()
		e.exitCode = &code
		e.mu.Unlock()
		close(e.started)
		return res, fmt.Errorf("health probe %q: %w", cmd, err)
	}
	d.execStarted(r, e, p)
	var out health.Output
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&out, pr); close(copied) }()
	exited := make(chan struct{})
	go func() { e.wait(p, nil); close(exited) }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut := false
	select {
	case <-exited:
	case <-timer.C:
		timedOut = true
	case <-stop:
	}
	select {
	case <-exited:
	default:
		if err := p.Kill(ctx, unix.SIGKILL); err != nil {
			d.cfg.Log.Warn("killing a health probe", "container", id, "err", err)
		}
		<-exited
	}
	// Ours closes only now: a runtime that copies the probe's output
	// itself (runc's executor) writes into it until the exec ended; the
	// read below ends once nothing else holds the pipe.
	pw.Close()
	d.execDied(r, e)
	drained(copied, probeDrain)
	pr.Close() // ends the copy if a child still holds the pipe
	<-copied
	if timedOut {
		msg := fmt.Sprintf("Health check exceeded timeout (%v)", timeout)
		if o := out.String(); o != "" {
			msg += ": " + o
		}
		return container.HealthcheckResult{ExitCode: -1, Output: msg}, nil
	}
	e.mu.Lock()
	code := -1
	if e.exitCode != nil {
		code = *e.exitCode
	}
	e.mu.Unlock()
	return container.HealthcheckResult{ExitCode: code, Output: out.String()}, nil
}
