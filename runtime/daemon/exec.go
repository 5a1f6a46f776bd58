package daemon

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/pkg/stdcopy"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// execStore holds the daemon's exec instances (docker exec) by ID. In
// memory only, as dockerd keeps them: a daemon restart ends every
// container and so every exec. The zero value is ready to use.
type execStore struct {
	mu sync.Mutex
	m  map[string]*execInstance
}

// execInstance is one exec: created, then started once.
type execInstance struct {
	id, containerID string
	opts            container.ExecOptions
	detachKeys      []byte // the keys that end an attached TTY exec's stream

	mu       sync.Mutex
	started  chan struct{} // closed once the process started or failed to
	begun    bool          // a start was asked for
	running  bool
	exitCode *int
	pid      int
	proc     executor.Process
}

func (s *execStore) add(e *execInstance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*execInstance{}
	}
	s.m[e.id] = e
}

func (s *execStore) get(id string) (*execInstance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[id]; e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("No such exec instance: %s: %w", id, drivers.ErrNotFound)
}

// remove forgets the exec id (a health probe's, once it ended).
func (s *execStore) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// drop forgets the execs of a removed container.
func (s *execStore) drop(containerID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, e := range s.m {
		if e.containerID == containerID {
			delete(s.m, id)
		}
	}
}

// execTarget returns the running container r's handle, or dockerd's
// refusal of an exec: not running, restarting or paused; l.mu is held.
func execTarget(r containers.Record, l *live) (executor.Container, error) {
	c, err := running(r, l)
	if err != nil {
		return nil, err
	}
	if r.State.Status == containers.Paused {
		return nil, fmt.Errorf("Container %s is paused, unpause the container before exec: %w", r.ID, drivers.ErrFailedPrecondition)
	}
	return c, nil
}

// CreateExec answers POST /containers/{id}/exec: it checks the container
// runs and records the exec.
func (d *Daemon) CreateExec(_ context.Context, ref string, o container.ExecOptions) (string, error) {
	if len(o.Cmd) == 0 {
		return "", fmt.Errorf("No exec command specified: %w", drivers.ErrInvalidArgument)
	}
	if o.Privileged {
		return "", fmt.Errorf("privileged exec is not supported by layerlabd: %w", drivers.ErrInvalidArgument)
	}
	keys, err := api.ParseDetachKeys(o.DetachKeys)
	if err != nil {
		return "", err
	}
	e, err := d.newExec(ref, o, keys)
	if err != nil {
		return "", err
	}
	return e.id, nil
}

// newExec records an exec of the running container ref and publishes
// exec_create. A user's exec and a health probe both come here.
func (d *Daemon) newExec(ref string, o container.ExecOptions, keys []byte) (*execInstance, error) {
	r, l, err := d.locked(ref)
	if err != nil {
		return nil, err
	}
	// Held until exec_create is out, so no pause's event comes between
	// the check and it.
	defer l.mu.Unlock()
	if _, err := execTarget(r, l); err != nil {
		return nil, err
	}
	e := &execInstance{id: containers.NewID(), containerID: r.ID, opts: o, detachKeys: keys, started: make(chan struct{})}
	d.execs.add(e)
	d.containerEvent(r, eventtypes.Action(string(eventtypes.ActionExecCreate)+": "+strings.Join(o.Cmd, " ")), map[string]string{"execID": e.id})
	return e, nil
}

// execContainer returns the record and handle of e's container, checked
// again to run and not be paused.
func (d *Daemon) execContainer(e *execInstance) (containers.Record, executor.Container, error) {
	r, l, err := d.locked(e.containerID)
	if err != nil {
		return r, nil, err
	}
	defer l.mu.Unlock()
	c, err := execTarget(r, l)
	return r, c, err
}

// execStarted records p as e's running process and publishes exec_start.
func (d *Daemon) execStarted(r containers.Record, e *execInstance, p executor.Process) {
	e.mu.Lock()
	e.proc, e.pid, e.running = p, p.Pid(), true
	e.mu.Unlock()
	close(e.started)
	d.containerEvent(r, eventtypes.Action(string(eventtypes.ActionExecStart)+": "+strings.Join(e.opts.Cmd, " ")), map[string]string{"execID": e.id})
}

// execDied publishes exec_die with the exit code wait recorded.
func (d *Daemon) execDied(r containers.Record, e *execInstance) {
	e.mu.Lock()
	code := -1
	if e.exitCode != nil {
		code = *e.exitCode
	}
	e.mu.Unlock()
	d.containerEvent(r, eventtypes.ActionExecDie, map[string]string{"execID": e.id, "exitCode": strconv.Itoa(code)})
}

// InspectExec answers GET /exec/{id}/json.
func (d *Daemon) InspectExec(_ context.Context, id string) (api.ExecInspect, error) {
	e, err := d.execs.get(id)
	if err != nil {
		return api.ExecInspect{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	privileged := false
	out := api.ExecInspect{
		ID: e.id, Running: e.running, ProcessConfig: &api.ExecProcessConfig{
			Tty: e.opts.Tty, Entrypoint: e.opts.Cmd[0], Arguments: slices.Clone(e.opts.Cmd[1:]), Privileged: &privileged, User: e.opts.User,
		},
		OpenStdin: e.opts.AttachStdin, OpenStdout: e.opts.AttachStdout, OpenStderr: e.opts.AttachStderr,
		ContainerID: e.containerID, Pid: e.pid, DetachKeys: e.detachKeys,
	}
	if out.ProcessConfig.Arguments == nil {
		out.ProcessConfig.Arguments = []string{}
	}
	if e.exitCode != nil {
		code := *e.exitCode
		out.ExitCode = &code
	}
	return out, nil
}

// StartExec answers POST /exec/{id}/start. Detached, it starts the
// process and returns. Otherwise it calls ready (the API answers 101 and
// hands over the connection), streams the process's output to conn
// (multiplexed unless it has a TTY), copies stdin into it when the exec
// attached stdin, and returns once the process has exited and its output
// is drained. A process that cannot start records 126 or 127 as its exit
// code and, attached, writes why into the stream, as dockerd does.
func (d *Daemon) StartExec(ctx context.Context, id string, detach bool, stdin io.Reader, conn io.Writer, ready func()) error {
	e, err := d.execs.get(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	switch {
	case e.exitCode != nil:
		e.mu.Unlock()
		return fmt.Errorf("exec command %s has already run: %w", e.id, drivers.ErrFailedPrecondition)
	case e.begun:
		e.mu.Unlock()
		return fmt.Errorf("Error: Exec command %s is already running: %w", e.id, drivers.ErrFailedPrecondition)
	}
	e.begun = true
	e.mu.Unlock()
	r, c, err := d.execContainer(e)
	var proc *specs.Process
	var stdio executor.Stdio
	if err == nil {
		proc, stdio, err = d.execProcess(e, detach, stdin, conn)
	}
	if err != nil {
		// Nothing ran: the exec may be started again.
		e.mu.Lock()
		e.begun = false
		e.mu.Unlock()
		return err
	}
	if !detach {
		ready()
	}
	p, err := c.Exec(context.WithoutCancel(ctx), proc, stdio)
	if err != nil {
		code := startFailureCode(err)
		e.mu.Lock()
		e.exitCode = &code
		e.mu.Unlock()
		close(e.started)
		if detach {
			return err
		}
		// Into the stream, as dockerd does: the answer went out.
		out := conn
		if !e.opts.Tty {
			out = stdcopy.NewStdWriter(conn, stdcopy.Stdout)
		}
		_, _ = io.WriteString(out, err.Error()+"\r\n")
		return nil
	}
	d.execStarted(r, e, p)
	var copied chan struct{}
	if con := p.Console(); con != nil {
		copied = make(chan struct{})
		out := io.Discard
		if !detach && (e.opts.AttachStdout || e.opts.AttachStderr) {
			out = conn
		}
		go func() { _, _ = io.Copy(&keepDraining{w: out}, con); close(copied) }()
		if stdin != nil && e.opts.AttachStdin {
			go func() { _, _ = io.Copy(con, stdin) }()
		}
	}
	wait := func() {
		e.wait(p, copied)
		d.execDied(r, e)
	}
	if detach {
		go wait()
		return nil
	}
	// A detach (the API cancels ctx when the client typed the detach
	// keys) ends the stream; the process runs on, its output drained.
	waited := make(chan struct{})
	go func() { wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
	}
	return nil
}

// execProcess builds the exec's process from its options and the
// container's config, and its stdio.
func (d *Daemon) execProcess(e *execInstance, detach bool, stdin io.Reader, conn io.Writer) (*specs.Process, executor.Stdio, error) {
	var stdio executor.Stdio
	r, err := d.ctrs.Get(e.containerID)
	if err != nil {
		return nil, stdio, err
	}
	userSpec := e.opts.User
	if userSpec == "" {
		userSpec = r.Config.User
	}
	u, err := lookupUser(d.rootfs(r.ID), userSpec)
	if err != nil {
		return nil, stdio, err
	}
	env := mergeEnv(r.Config.Env, e.opts.Env)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		env = append(env, "HOME="+u.Home)
	}
	cwd := e.opts.WorkingDir
	if cwd == "" {
		cwd = r.Config.WorkingDir
	}
	proc, err := executor.DefaultProcess(e.opts.Cmd, executor.SpecOpts{Env: env, Cwd: cwd, UID: uint32(u.Uid), GID: uint32(u.Gid), Terminal: e.opts.Tty})
	if err != nil {
		return nil, stdio, err
	}
	for _, g := range u.Sgids {
		proc.User.AdditionalGids = append(proc.User.AdditionalGids, uint32(g))
	}
	stdio.Terminal = e.opts.Tty
	if e.opts.Tty || detach {
		return proc, stdio, nil
	}
	if e.opts.AttachStdin {
		stdio.Stdin = stdin
	}
	if e.opts.AttachStdout {
		stdio.Stdout = &keepDraining{w: stdcopy.NewStdWriter(conn, stdcopy.Stdout)}
	}
	if e.opts.AttachStderr {
		stdio.Stderr = &keepDraining{w: stdcopy.NewStdWriter(conn, stdcopy.Stderr)}
	}
	return proc, stdio, nil
}

// keepDraining writes to w until a write fails, then discards: a client
// that went away must neither block the exec's process on a full pipe
// nor kill it with SIGPIPE. One goroutine writes each.
type keepDraining struct {
	w      io.Writer
	failed bool
}

func (k *keepDraining) Write(p []byte) (int, error) {
	if !k.failed {
		if _, err := k.w.Write(p); err != nil {
			k.failed = true
		}
	}
	return len(p), nil
}

// consoleDrain is how long the output still in a terminal (an exec's, a
// container's) is read after its process exited: a child it left behind
// may hold the terminal open for ever.
const consoleDrain = 2 * time.Second

// drained waits for copied to close, for at most limit: the copy of a
// process's output ends by itself once nothing holds its terminal or
// pipe; the caller then closes its end to cut off what still holds it.
func drained(copied <-chan struct{}, limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-copied:
	case <-t.C:
	}
}

// wait records how the process ended once it has, and its terminal's
// output was read.
func (e *execInstance) wait(p executor.Process, copied chan struct{}) {
	exit, err := p.Wait(context.Background())
	code := exit.Code
	if err != nil {
		code = 255
	}
	if copied != nil {
		drained(copied, consoleDrain)
		_ = p.Console().Close()
		<-copied
	}
	e.mu.Lock()
	e.running = false
	e.exitCode = &code
	e.mu.Unlock()
}

// startFailureCode is the exit code dockerd and the CLI give a process
// that could not start: 127 when the command is not found, else 126.
func startFailureCode(err error) int {
	msg := err.Error()
	if strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory") {
		return 127
	}
	return 126
}

// ResizeExec answers POST /exec/{id}/resize: the size of the exec's
// terminal, once its process started (the CLI may ask before).
func (d *Daemon) ResizeExec(ctx context.Context, id string, width, height uint16) error {
	e, err := d.execs.get(id)
	if err != nil {
		return err
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-e.started:
	case <-timer.C:
		return fmt.Errorf("timeout waiting for exec session ready: %w", drivers.ErrFailedPrecondition)
	case <-ctx.Done():
		return ctx.Err()
	}
	e.mu.Lock()
	p, running := e.proc, e.running
	e.mu.Unlock()
	if p == nil || !running {
		return fmt.Errorf("exec %s is not running: %w", id, drivers.ErrFailedPrecondition)
	}
	return p.Resize(ctx, width, height)
}
