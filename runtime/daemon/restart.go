package daemon

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
)

// dockerd's restart backoff: the first restart waits 100 ms, each next
// one twice as long, at most a minute; a run of 10 s or more resets it.
const (
	restartFirstDelay = 100 * time.Millisecond
	restartMaxDelay   = time.Minute
	restartResetAfter = 10 * time.Second
)

// restartState is a container's restart policy at work, guarded by its
// live's mu: it lives in memory as dockerd's restart manager does.
type restartState struct {
	pending chan struct{} // non-nil while a restart waits; closed to cancel it
	delay   time.Duration // the last backoff
	// final is a user's stop or kill (of the stop signal or SIGKILL):
	// the run it ends is not restarted, whatever the policy.
	final bool
}

// validateRestartPolicy refuses what dockerd refuses at create: an
// unknown policy, a count with another policy than on-failure or a
// negative one, and a restart policy on an AutoRemove container.
func validateRestartPolicy(hc *container.HostConfig) error {
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	if hc.AutoRemove && !hc.RestartPolicy.IsNone() {
		return fmt.Errorf("can't create 'AutoRemove' container with restart policy: %w", drivers.ErrInvalidArgument)
	}
	return nil
}

// isUp is what Docker counts as running: a paused container and one
// waiting for its restart too.
func isUp(status string) bool {
	return status == containers.Running || status == containers.Paused || status == containers.Restarting
}

// shouldRestart is dockerd's decision after an exit: always restarts,
// unless-stopped unless a user stopped it, on-failure after a non-zero
// exit while the count is below its maximum (0: no maximum).
func shouldRestart(p container.RestartPolicy, exitCode, count int, manuallyStopped bool) bool {
	switch {
	case p.IsAlways():
		return true
	case p.IsUnlessStopped():
		return !manuallyStopped
	case p.IsOnFailure():
		return exitCode != 0 && (p.MaximumRetryCount == 0 || count < p.MaximumRetryCount)
	}
	return false
}

// isStopSignal says whether sig is one that ends a container for good
// when a user sends it: SIGKILL or the container's stop signal.
func isStopSignal(r containers.Record, sig syscall.Signal) bool {
	stop, err := parseSignal(r.Config.StopSignal, unix.SIGTERM)
	return sig == unix.SIGKILL || (err == nil && sig == stop)
}

// userStart is a user's start: a pending restart is dropped (this start
// replaces it) and the policy starts afresh, as dockerd resets its
// restart manager: no count, no backoff, not manually stopped. l.mu is
// held.
func (d *Daemon) userStart(id string, l *live) error {
	if l.rs.pending != nil {
		close(l.rs.pending)
	}
	l.rs = restartState{}
	_, err := d.ctrs.Update(id, func(r *containers.Record) error {
		r.RestartCount, r.ManuallyStopped = 0, false
		return nil
	})
	return err
}

// manualStop records a user's stop or kill of a container that runs or
// waits for a restart: ManuallyStopped (unless the daemon is shutting
// down, which is not the user's doing), and with final no restart of this
// run; a pending restart is canceled and the container reported exited.
// It says whether it canceled a pending restart (then nothing runs).
func (d *Daemon) manualStop(id string, l *live, final bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil && l.rs.pending == nil {
		return false
	}
	if final {
		l.rs.final = true
	}
	canceled := l.rs.pending != nil
	if canceled {
		close(l.rs.pending)
		l.rs.pending = nil
	}
	_, err := d.ctrs.Update(id, func(r *containers.Record) error {
		if !d.closing.Load() {
			r.ManuallyStopped = true
		}
		if canceled && r.State.Status == containers.Restarting {
			st := r.State
			st.Status = containers.Exited
			return r.SetState(st)
		}
		return nil
	})
	if err != nil {
		d.cfg.Log.Warn("recording a manual stop", "container", id, "err", err)
	}
	return canceled
}

// afterExit runs when finish has recorded an exit, under l.mu, so a
// user's stop sees either the run or the pending restart: per the restart
// policy it reports the container restarting, counts the restart and
// starts it again after the backoff. Not while the daemon shuts down, nor
// after a user's stop.
func (d *Daemon) afterExit(id string, l *live) {
	final := l.rs.final
	l.rs.final = false
	if d.closing.Load() || final || l.c != nil || l.rs.pending != nil {
		return
	}
	r, err := d.ctrs.Get(id)
	if err != nil || r.State.Status != containers.Exited ||
		!shouldRestart(r.HostConfig.RestartPolicy, r.State.ExitCode, r.RestartCount, r.ManuallyStopped) {
		return
	}
	if r.State.FinishedAt.Sub(r.State.StartedAt) >= restartResetAfter {
		l.rs.delay = 0
	}
	switch {
	case l.rs.delay == 0:
		l.rs.delay = restartFirstDelay
	case l.rs.delay < restartMaxDelay:
		l.rs.delay = min(2*l.rs.delay, restartMaxDelay)
	}
	if _, err := d.ctrs.Update(id, func(r *containers.Record) error {
		st := r.State
		st.Status = containers.Restarting
		r.RestartCount++
		return r.SetState(st)
	}); err != nil {
		d.cfg.Log.Warn("recording a restart", "container", id, "err", err)
		return
	}
	pending := make(chan struct{})
	l.rs.pending = pending
	go d.restartAfter(id, l, pending, l.rs.delay)
}

// restartAfter starts the container after delay unless pending is closed
// first (a user's stop, start or removal, or the daemon's shutdown).
func (d *Daemon) restartAfter(id string, l *live, pending chan struct{}, delay time.Duration) {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-pending:
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rs.pending != pending || d.closing.Load() {
		return
	}
	l.rs.pending = nil
	d.policyStart(context.Background(), id, l)
}

// policyStart starts a container its restart policy brings back; l.mu is
// held. A start that fails leaves it exited with the error, as dockerd
// gives up then.
func (d *Daemon) policyStart(ctx context.Context, id string, l *live) {
	r, err := d.ctrs.Get(id)
	if err != nil {
		return
	}
	if err := d.start(ctx, r, l); err != nil {
		d.cfg.Log.Warn("restart policy: the start failed", "container", id, "err", err)
		_, _ = d.ctrs.Update(id, func(r *containers.Record) error {
			if r.State.Status != containers.Restarting {
				return nil
			}
			st := r.State
			st.Status, st.Error = containers.Exited, err.Error()
			return r.SetState(st)
		})
	}
}

// cancelRestarts drops every pending restart: the daemon shuts down.
func (d *Daemon) cancelRestarts() {
	d.mu.Lock()
	var all []*live
	for _, l := range d.lives {
		all = append(all, l)
	}
	d.mu.Unlock()
	for _, l := range all {
		l.mu.Lock()
		if l.rs.pending != nil {
			close(l.rs.pending)
			l.rs.pending = nil
		}
		l.mu.Unlock()
	}
}

// restartOnBoot starts, once recover has reported them exited, the
// containers dockerd starts when it starts: a restart that was pending
// when the daemon died, and those that have run and whose policy says
// so: always (even after a user's stop, as Docker documents),
// unless-stopped unless a user stopped it, on-failure after a failure
// below its count. A failed start is logged and leaves it exited.
func (d *Daemon) restartOnBoot(ctx context.Context) {
	recs, err := d.ctrs.List()
	if err != nil {
		d.cfg.Log.Warn("restart policies at start", "err", err)
		return
	}
	for _, r := range recs {
		due := r.State.Status == containers.Restarting || (r.State.Status == containers.Exited && !r.State.StartedAt.IsZero() &&
			shouldRestart(r.HostConfig.RestartPolicy, r.State.ExitCode, r.RestartCount, r.ManuallyStopped))
		if !due {
			continue
		}
		l := d.live(r.ID)
		l.mu.Lock()
		var err error
		if r.State.Status == containers.Exited {
			err = d.setStatus(r.ID, containers.Restarting) // so a failed start is recorded
		}
		if err == nil {
			d.policyStart(ctx, r.ID, l)
		}
		l.mu.Unlock()
		if err != nil {
			d.cfg.Log.Warn("restart policy at start", "container", r.ID, "err", err)
		}
	}
}
