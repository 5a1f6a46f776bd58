package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/opencontainers/runc/libcontainer"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// container is a Libcontainer's handle on one container; the embedded
// process is its init.
type container struct {
	id string
	lc *libcontainer.Container
	*process
}

func (c *container) ID() string { return c.id }

func (c *container) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("container %s: start: %w: %w", c.id, err, ErrNotRunning)
	}
	return nil
}

func (c *container) Kill(ctx context.Context, sig syscall.Signal) error {
	return c.wrap(fmt.Sprintf("kill %v", sig), c.lc.Signal(sig))
}

func (c *container) Pause(ctx context.Context) error { return c.wrap("pause", c.lc.Pause()) }

func (c *container) Resume(ctx context.Context) error { return c.wrap("resume", c.lc.Resume()) }

// wrap names the container and op in err and turns libcontainer's state
// errors into this package's, which wrap drivers.ErrFailedPrecondition.
func (c *container) wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libcontainer.ErrNotRunning):
		return fmt.Errorf("container %s: %s: %w", c.id, op, ErrNotRunning)
	case errors.Is(err, libcontainer.ErrNotPaused):
		return fmt.Errorf("container %s: %s: %w", c.id, op, ErrNotPaused)
	}
	return fmt.Errorf("container %s: %s: %w", c.id, op, err)
}

func (c *container) Pids(ctx context.Context) ([]int, error) {
	pids, err := c.lc.Processes()
	if err != nil {
		return nil, fmt.Errorf("container %s: pids: %w", c.id, err)
	}
	return pids, nil
}

func (c *container) Status(ctx context.Context) (Status, error) {
	st, err := c.lc.Status()
	if err != nil {
		return "", fmt.Errorf("container %s: status: %w", c.id, err)
	}
	switch st {
	case libcontainer.Created:
		return Created, nil
	case libcontainer.Running:
		return Running, nil
	case libcontainer.Paused:
		return Paused, nil
	}
	return Stopped, nil
}

// Exec starts another process in the running container, joining its
// namespaces and cgroup (docker exec).
func (c *container) Exec(ctx context.Context, spec *specs.Process, stdio Stdio) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if st, err := c.Status(ctx); err != nil || st != Running {
		return nil, fmt.Errorf("container %s: exec: status %s (%v): %w", c.id, st, err, ErrNotRunning)
	}
	p, err := newProcess("exec in container "+c.id, spec, stdio, false)
	if err != nil {
		return nil, err
	}
	if err := p.start(c.lc.Run, nil); err != nil {
		return nil, err
	}
	return execProcess{p}, nil
}

// execProcess is a process Exec started.
type execProcess struct{ *process }

func (p execProcess) Kill(ctx context.Context, sig syscall.Signal) error {
	if err := p.lp.Signal(sig); err != nil {
		return fmt.Errorf("%s: kill %v: %w: %w", p.what, sig, err, ErrNotRunning)
	}
	return nil
}

func (c *container) Delete(ctx context.Context) error {
	select {
	case <-c.done:
	default:
		// SIGKILL to a pid namespace's init kills all of it, and
		// libcontainer thaws a frozen cgroup first so the kill lands.
		if err := c.lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %s: kill: %w", c.id, err)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("container %s: waiting for the init to die: %w", c.id, ctx.Err())
		}
	}
	c.closeParent()
	if err := c.lc.Destroy(); err != nil {
		return fmt.Errorf("container %s: destroy: %w", c.id, err)
	}
	return nil
}

// oomKilled records in exit whether the container's memory cgroup's OOM
// kill counter moved: the kernel has updated it by the time the init is
// reaped (an OOM event notification could still be in flight then), and
// the cgroup lives until Destroy. A counter that cannot be read counts as
// no OOM kill.
func (c *container) oomKilled(exit *Exit) {
	st, err := c.lc.State()
	if err != nil {
		return
	}
	// cgroup v1: memory.oom_control; v2 (the "" controller): memory.events.
	for key, name := range map[string]string{"memory": "memory.oom_control", "": "memory.events"} {
		dir := st.CgroupPaths[key]
		if dir == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if n, ok := strings.CutPrefix(line, "oom_kill "); ok && strings.TrimSpace(n) != "0" {
				exit.OOMKilled = true
			}
		}
	}
}
