package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	eventtypes "github.com/docker/docker/api/types/events"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// errNotRunning and its kin are dockerd's refusals (409) of an operation
// that needs a running container.
func errNotRunning(id string) error {
	return fmt.Errorf("Container %s is not running: %w", id, drivers.ErrFailedPrecondition)
}

func errRestarting(id string) error {
	return fmt.Errorf("Container %s is restarting, wait until the container is running: %w", id, drivers.ErrFailedPrecondition)
}

// running returns the handle of the running container r (paused too),
// or dockerd's refusal; l.mu is held.
func running(r containers.Record, l *live) (executor.Container, error) {
	if r.State.Status == containers.Restarting {
		return nil, errRestarting(r.ID)
	}
	if l.c == nil {
		return nil, errNotRunning(r.ID)
	}
	return l.c, nil
}

// locked returns the record ref under its live's lock, read after taking
// it so it is current; the caller unlocks l.mu.
func (d *Daemon) locked(ref string) (containers.Record, *live, error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return r, nil, err
	}
	l := d.live(r.ID)
	l.mu.Lock()
	if r, err = d.ctrs.Get(r.ID); err != nil {
		l.mu.Unlock()
		return r, nil, err
	}
	return r, l, nil
}

// PauseContainer answers POST /containers/{id}/pause: the freezer stops
// every process of the container. dockerd probes no paused container, so
// the health monitor is halted first and waited for, with l.mu released
// (a probe takes it to start its exec): a probe's exec still joining the
// container's cgroup keeps the v1 freezer from settling ("unable to
// freeze"). Unpause starts a monitor again.
func (d *Daemon) PauseContainer(ctx context.Context, ref string) error {
	halted := false
	for {
		r, l, err := d.locked(ref)
		if err != nil {
			return err
		}
		m := l.health
		if m.returned() || ctx.Err() != nil {
			defer l.mu.Unlock()
			err := ctx.Err()
			if err == nil {
				err = d.pauseLocked(ctx, r, l)
			}
			if err != nil && halted && l.c != nil && r.State.Status == containers.Running {
				d.startHealth(r, l) // not paused after all: probes go on
			}
			return err
		}
		m.halt()
		halted = true
		l.mu.Unlock()
		m.wait()
		// The container may have changed meanwhile (by ID from here: its
		// name may now be another's): look again.
		ref = r.ID
	}
}

// pauseLocked freezes the running container r, whose monitor (if any)
// has returned; l.mu is held.
func (d *Daemon) pauseLocked(ctx context.Context, r containers.Record, l *live) error {
	c, err := running(r, l)
	if err != nil {
		return err
	}
	if r.State.Status == containers.Paused {
		return fmt.Errorf("Container %s is already paused: %w", r.ID, drivers.ErrFailedPrecondition)
	}
	if err := freeze(ctx, c); err != nil {
		return err
	}
	d.containerEvent(r, eventtypes.ActionPause, nil)
	return d.setStatus(r.ID, containers.Paused)
}

// freeze pauses c. An exec joining the container's cgroup (a user's, or
// a health probe's when a commit pauses) can keep the v1 freezer from
// settling, so a refused freeze is tried again a few times.
func freeze(ctx context.Context, c executor.Container) error {
	err := c.Pause(ctx)
	for try := 0; err != nil && strings.Contains(err.Error(), "unable to freeze") && try < 5; try++ {
		time.Sleep(100 * time.Millisecond)
		err = c.Pause(ctx)
	}
	return err
}

// UnpauseContainer answers POST /containers/{id}/unpause.
func (d *Daemon) UnpauseContainer(ctx context.Context, ref string) error {
	r, l, err := d.locked(ref)
	if err != nil {
		return err
	}
	defer l.mu.Unlock()
	if r.State.Status != containers.Paused || l.c == nil {
		return fmt.Errorf("Container %s is not paused: %w", r.ID, drivers.ErrFailedPrecondition)
	}
	if err := l.c.Resume(ctx); err != nil {
		return err
	}
	d.containerEvent(r, eventtypes.ActionUnPause, nil)
	if err := d.setStatus(r.ID, containers.Running); err != nil {
		return err
	}
	d.startHealth(r, l)
	return nil
}

// setStatus moves the container between running and paused, keeping the
// rest of its state.
func (d *Daemon) setStatus(id, status string) error {
	_, err := d.ctrs.Update(id, func(r *containers.Record) error {
		st := r.State
		st.Status = status
		return r.SetState(st)
	})
	return err
}

// thawAfterKill resumes a paused container after SIGKILL or its stop
// signal was sent to it, so the signal is delivered, as dockerd's kill
// does (any other signal waits, pending, for an unpause). With probe (a
// kill, which the container may survive; not a stop) its health monitor
// runs again, as after an unpause; if it dies, finish ends the monitor.
func (d *Daemon) thawAfterKill(ctx context.Context, id string, l *live, probe bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, err := d.ctrs.Get(id)
	if err != nil || r.State.Status != containers.Paused || l.c == nil {
		return
	}
	if err := l.c.Resume(ctx); err != nil && !errors.Is(err, executor.ErrNotPaused) && !errors.Is(err, executor.ErrNotRunning) {
		d.cfg.Log.Warn("unpausing after a kill", "container", id, "err", err)
		return
	}
	if err := d.setStatus(id, containers.Running); err != nil {
		d.cfg.Log.Warn("unpausing after a kill", "container", id, "err", err)
		return
	}
	if probe {
		d.startHealth(r, l)
	}
}
