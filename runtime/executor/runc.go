package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Runc is the Executor that drives the runc binary (Debian's runc, or any
// OCI runtime with runc's command line): `runc create` with a bundle per
// container, then start, kill, pause, resume, exec, ps, state and delete.
//
// No shim sits between: the daemon makes itself a child subreaper, so
// each container's init, whose parent `runc create` exits once the init
// waits for start, is re-parented to the daemon, which reaps it and reads
// its exit status as a shim would. The container's stdio are pipes (or a
// pty runc sends over a console socket) whose other ends the daemon
// holds.
type Runc struct {
	binary       string
	state        string // runc --root
	bundles      string // one directory per container: config.json, pid, console socket
	cgroupParent string
	noPivot      bool // see rootIsInitramfs
}

// NewRunc returns an executor that runs binary (a name looked up in PATH,
// or a path) with its state under root and containers whose spec names no
// cgroup under cgroupParent ("" for DefaultCgroupParent). It makes the
// calling process a child subreaper.
func NewRunc(binary, root, cgroupParent string) (*Runc, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("runc root %q: want an absolute path: %w", root, drivers.ErrInvalidArgument)
	}
	bin, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("the runc executor needs the %s binary (Debian's runc; make setup installs it): %w: %w", binary, err, drivers.ErrUnavailable)
	}
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	e := &Runc{binary: bin, state: filepath.Join(root, "state"), bundles: filepath.Join(root, "bundles"), cgroupParent: cgroupParent, noPivot: rootIsInitramfs()}
	for _, d := range []string{e.state, e.bundles} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runc root: %w", err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("runc executor: become a child subreaper: %w", err)
	}
	return e, nil
}

// runc runs one runc command and returns its stdout; its stderr is the
// error's text.
func (e *Runc) runc(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, e.binary, append([]string{"--root", e.state}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return out, runcError{op: args[0], msg: msg}
	}
	return out, nil
}

// runcError is a failed runc command, with what it said.
type runcError struct{ op, msg string }

func (r runcError) Error() string { return "runc " + r.op + ": " + r.msg }

// Is maps runc's wording to this package's state errors.
func (r runcError) Is(target error) bool {
	gone := strings.Contains(r.msg, "does not exist")
	notRunning := gone || strings.Contains(r.msg, "not running") || strings.Contains(r.msg, "stopped")
	notPaused := strings.Contains(r.msg, "not paused")
	switch target {
	case ErrNotRunning:
		return notRunning
	case ErrNotPaused:
		return notPaused
	case drivers.ErrFailedPrecondition:
		return notRunning || notPaused
	case drivers.ErrNotFound:
		return gone
	}
	return false
}

// Create implements Executor.
func (e *Runc) Create(ctx context.Context, id string, spec *specs.Spec, stdio Stdio) (_ Container, err error) {
	if err := checkCreate(ctx, id, spec); err != nil {
		return nil, err
	}
	if len(spec.Process.Args) == 0 {
		return nil, fmt.Errorf("container %s: no command to run: %w", id, drivers.ErrInvalidArgument)
	}
	if stdio.Terminal != spec.Process.Terminal {
		return nil, fmt.Errorf("container %s: stdio.Terminal=%v but the spec's process.terminal=%v: %w", id, stdio.Terminal, spec.Process.Terminal, drivers.ErrInvalidArgument)
	}
	s := withCgroup(spec, e.cgroupParent, id)
	bundle := filepath.Join(e.bundles, id)
	if err := os.Mkdir(bundle, 0o700); errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("container %s: %w", id, drivers.ErrAlreadyExists)
	} else if err != nil {
		return nil, fmt.Errorf("container %s: bundle: %w", id, err)
	}
	defer func() {
		if err != nil {
			_, _ = e.runc(context.WithoutCancel(ctx), "delete", "--force", id)
			_ = os.RemoveAll(bundle)
		}
	}()
	cfg, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("container %s: spec: %w: %w", id, err, drivers.ErrInvalidArgument)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), cfg, 0o600); err != nil {
		return nil, fmt.Errorf("container %s: bundle: %w", id, err)
	}
	pidFile := filepath.Join(bundle, "init.pid")
	args := []string{"create", "--bundle", bundle, "--pid-file", pidFile}
	if e.noPivot {
		args = append(args, "--no-pivot")
	}
	p, err := e.startRunc(ctx, "container "+id, bundle, stdio, append(args, id)...)
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Wait(); err != nil {
		p.closeAll()
		return nil, fmt.Errorf("container %s: %w", id, runcError{op: "create", msg: p.stderrText(err)})
	}
	pid, err := readPid(pidFile)
	if err != nil {
		p.closeAll()
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	p.pid = pid
	if err := p.childrenStarted(); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		_, _ = waitPid(pid)
		return nil, err
	}
	c := &runcContainer{e: e, id: id, bundle: bundle, cgroup: s.Linux.CgroupsPath, proc: p}
	go p.reap(func() (Exit, error) { return waitPid(pid) }, 0, c.oomKilled)
	return c, nil
}

// readPid reads the pid runc wrote.
func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("runc's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("runc's pid file %s: %q is no pid", path, b)
	}
	return pid, nil
}

// waitPid reaps pid, a container init re-parented to us, and reads how it
// ended.
func waitPid(pid int) (Exit, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Exit{At: time.Now()}, fmt.Errorf("wait for pid %d: %w", pid, err)
		}
		break
	}
	x := Exit{At: time.Now(), Code: ws.ExitStatus()}
	if ws.Signaled() {
		x.Signal = syscall.Signal(ws.Signal())
		x.Code = 128 + int(x.Signal)
	}
	return x, nil
}

// List implements Executor: the containers with a bundle here.
func (e *Runc) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(e.bundles)
	if err != nil {
		return nil, fmt.Errorf("runc root: %w", err)
	}
	var ids []string
	for _, d := range entries {
		if d.IsDir() {
			ids = append(ids, d.Name())
		}
	}
	return ids, nil
}

// Purge implements Executor: runc kills what is left and deletes its
// state; the init, re-parented to init(1) when the daemon that made it
// died, is reaped there.
func (e *Runc) Purge(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	if _, err := e.runc(ctx, "delete", "--force", id); err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return fmt.Errorf("container %s: %w", id, err)
	}
	return os.RemoveAll(filepath.Join(e.bundles, id))
}

// Close implements Executor.
func (e *Runc) Close() error { return removeParentCgroups(e.cgroupParent) }

// runcContainer is a Runc's handle on one container.
type runcContainer struct {
	e      *Runc
	id     string
	bundle string
	cgroup string
	proc   *runcProcess // the init's stdio and exit
}

func (c *runcContainer) ID() string { return c.id }

// Pid is the init's host pid.
func (c *runcContainer) Pid() int { return c.proc.pid }

func (c *runcContainer) Start(ctx context.Context) error {
	if _, err := c.e.runc(ctx, "start", c.id); err != nil {
		return fmt.Errorf("container %s: %w: %w", c.id, err, ErrNotRunning)
	}
	return nil
}

func (c *runcContainer) Wait(ctx context.Context) (Exit, error) { return c.proc.Wait(ctx) }

// Kill sends sig to the init; SIGKILL to a paused container also thaws it
// so the kill lands.
func (c *runcContainer) Kill(ctx context.Context, sig syscall.Signal) error {
	if _, err := c.e.runc(ctx, "kill", c.id, strconv.Itoa(int(sig))); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	if sig == unix.SIGKILL {
		if st, err := c.Status(ctx); err == nil && st == Paused {
			_, _ = c.e.runc(ctx, "resume", c.id)
		}
	}
	return nil
}

func (c *runcContainer) Pause(ctx context.Context) error {
	if _, err := c.e.runc(ctx, "pause", c.id); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return nil
}

func (c *runcContainer) Resume(ctx context.Context) error {
	if _, err := c.e.runc(ctx, "resume", c.id); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return nil
}

func (c *runcContainer) Pids(ctx context.Context) ([]int, error) {
	out, err := c.e.runc(ctx, "ps", "--format", "json", c.id)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.id, err)
	}
	var pids []int
	if err := json.Unmarshal(out, &pids); err != nil {
		return nil, fmt.Errorf("container %s: runc ps: %w", c.id, err)
	}
	return pids, nil
}

func (c *runcContainer) Status(ctx context.Context) (Status, error) {
	select {
	case <-c.proc.done:
		return Stopped, nil
	default:
	}
	out, err := c.e.runc(ctx, "state", c.id)
	if err != nil {
		return "", fmt.Errorf("container %s: %w", c.id, err)
	}
	var st specs.State
	if err := json.Unmarshal(out, &st); err != nil {
		return "", fmt.Errorf("container %s: runc state: %w", c.id, err)
	}
	switch st.Status {
	case "created", "creating":
		return Created, nil
	case "running":
		return Running, nil
	case "paused", "pausing":
		return Paused, nil
	}
	return Stopped, nil
}

func (c *runcContainer) Console() *os.File { return c.proc.console }

func (c *runcContainer) Resize(ctx context.Context, width, height uint16) error {
	return c.proc.Resize(ctx, width, height)
}

// Delete kills what still runs, waits for the init to be reaped, and has
// runc remove the cgroups and its state; the bundle goes too.
func (c *runcContainer) Delete(ctx context.Context) error {
	select {
	case <-c.proc.done:
	default:
		if err := c.Kill(ctx, unix.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		select {
		case <-c.proc.done:
		case <-ctx.Done():
			return fmt.Errorf("container %s: waiting for the init to die: %w", c.id, ctx.Err())
		}
	}
	c.proc.closeAll()
	if _, err := c.e.runc(ctx, "delete", "--force", c.id); err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return os.RemoveAll(c.bundle)
}

// oomKilled reads the OOM kill counter of the container's memory cgroup,
// which lives until Delete.
func (c *runcContainer) oomKilled(x *Exit) {
	for _, f := range []string{"/sys/fs/cgroup/memory" + c.cgroup + "/memory.oom_control", "/sys/fs/cgroup" + c.cgroup + "/memory.events"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if n, ok := strings.CutPrefix(line, "oom_kill "); ok && strings.TrimSpace(n) != "0" {
				x.OOMKilled = true
			}
		}
	}
}
