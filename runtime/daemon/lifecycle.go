package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/executor"
	"github.com/layerlab/layerlab/runtime/health"
	"github.com/layerlab/layerlab/runtime/logs"
)

// live is what the daemon holds for a container besides its record: the
// executor's handle while it runs, the streams attached to it and the
// channels its waiters block on.
type live struct {
	mu       sync.Mutex
	c        executor.Container // nil unless running
	exit     chan struct{}      // closed at the next exit, then replaced
	finished chan struct{}      // closed once a run is cleaned up; nil when not running
	removed  chan struct{}      // closed when the container is removed, or its auto-removal failed
	// removeErr is why the last auto-removal failed: the "removed"
	// waiters are told instead of blocking for ever.
	removeErr error
	code      int     // the last exit code
	streams   *fanout // the running container's attached streams
	// The container's stdin (OpenStdin only): attaches write the pipe,
	// the next start reads it; made by whichever comes first.
	stdinR *io.PipeReader
	stdinW *io.PipeWriter
	rs     restartState // the restart policy's state (restart.go)
	// health runs the run's health probes (health.go); nil without a
	// probe. Halted at a stop or pause, waited for by finish.
	health *healthMonitor
}

// stdin returns the stdin pipe, making it if there is none; l.mu is held.
func (l *live) stdin() (*io.PipeReader, *io.PipeWriter) {
	if l.stdinW == nil {
		l.stdinR, l.stdinW = io.Pipe()
	}
	return l.stdinR, l.stdinW
}

// live returns the container's live state, making it on first use.
func (d *Daemon) live(id string) *live {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.lives[id]
	if l == nil {
		l = &live{exit: make(chan struct{}), removed: make(chan struct{})}
		d.lives[id] = l
	}
	return l
}

// StartContainer answers POST /containers/{id}/start: it mounts the
// rootfs, creates and starts the container, and has a goroutine record the
// exit and clean up.
func (d *Daemon) StartContainer(ctx context.Context, ref string) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := d.userStart(r.ID, l); err != nil {
		return err
	}
	return d.start(ctx, r, l)
}

// start starts the container r; l.mu is held. A user's start and a
// restart policy's both come here.
func (d *Daemon) start(ctx context.Context, r containers.Record, l *live) (err error) {
	if l.c != nil {
		return fmt.Errorf("container %s is already running: %w", r.Name, containers.ErrBadTransition)
	}
	// Read again under the lock: a start that ran meanwhile changed it.
	if r, err = d.ctrs.Get(r.ID); err != nil {
		return err
	}
	if err := containers.Transition(r.State.Status, containers.Running); err != nil {
		return err
	}
	// Deferred before the unmount below, so it runs after it.
	defer func() {
		if err != nil {
			d.failedStart(ctx, r, l, err)
		}
	}()
	drv, err := d.Driver(r.Driver)
	if err != nil {
		return err
	}
	rootfs := d.rootfs(r.ID)
	mounts, err := drv.Mounts(ctx, r.SnapshotKey)
	if err != nil {
		return err
	}
	if err := d.mountRootfs(r.Driver, mounts, rootfs); err != nil {
		return fmt.Errorf("mounting the rootfs of %s: %w", r.Name, err)
	}
	log, err := d.openLog(r)
	if err != nil {
		return errors.Join(err, mount.UnmountAll(rootfs))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, log.Close(), mount.UnmountAll(rootfs))
		}
	}()
	nsPath, etc, linkEnv, err := d.startNetwork(r)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.stopNetwork(r.ID))
		}
	}()
	spec, err := d.spec(r, rootfs, nsPath)
	if err != nil {
		return err
	}
	withMounts(spec, etc)
	spec.Process.Env = append(spec.Process.Env, linkEnv...)
	vm, err := d.mountVolumes(ctx, r, rootfs)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.unmountVolumes(r))
		}
	}()
	withMounts(spec, vm)
	if l.streams == nil {
		l.streams = &fanout{}
	}
	stdio := executor.Stdio{Stdout: l.streams.writer(log, "stdout"), Stderr: l.streams.writer(log, "stderr"), Terminal: r.Config.Tty}
	var stdin io.Reader
	if r.Config.OpenStdin {
		stdin, _ = l.stdin()
		if !r.Config.Tty {
			stdio.Stdin = stdin
		}
	}
	c, err := d.exec.Create(ctx, r.ID, spec, stdio)
	if err != nil {
		return fmt.Errorf("creating container %s: %w", r.Name, err)
	}
	if err := c.Start(ctx); err != nil {
		return errors.Join(fmt.Errorf("starting container %s: %w", r.Name, err), c.Delete(context.WithoutCancel(ctx)))
	}
	pid := 0
	if p, ok := c.(interface{ Pid() int }); ok {
		pid = p.Pid()
	}
	started, err := d.ctrs.Update(r.ID, func(r *containers.Record) error {
		st := containers.State{Status: containers.Running, Pid: pid, StartedAt: time.Now().UTC(), Health: r.State.Health}
		if health.Command(r.Config.Healthcheck, r.Config.Shell) != nil {
			st.Health = health.Begin(r.State.Health)
		}
		return r.SetState(st)
	})
	if err != nil {
		return errors.Join(err, c.Delete(context.WithoutCancel(ctx)))
	}
	var copied chan struct{}
	if con := c.Console(); con != nil {
		copied = make(chan struct{})
		out := stdio.Stdout
		go func() { _, _ = io.Copy(out, con); close(copied) }()
		if stdin != nil {
			go func() { _, _ = io.Copy(con, stdin) }()
		}
	}
	d.statsStarted(r.ID)
	finished := make(chan struct{})
	l.c, l.finished = c, finished
	d.containerEvent(r, eventtypes.ActionStart, nil)
	d.startHealth(started, l)
	go d.finish(r.ID, l, c, log, copied, finished)
	return nil
}

// failedStart records why a start failed (with the exit code the CLI
// derives from such a message: 127 for a command not found, 126 for one
// that cannot run) and ends what waits for the run that did not happen:
// attaches, stdin, and with AutoRemove the container itself, as dockerd
// does. l.mu is held.
func (d *Daemon) failedStart(ctx context.Context, r containers.Record, l *live, cause error) {
	code := 128
	switch msg := cause.Error(); {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		code = 127
	case strings.Contains(msg, "permission denied"):
		code = 126
	}
	_, _ = d.ctrs.Update(r.ID, func(r *containers.Record) error {
		r.State.Error, r.State.ExitCode = cause.Error(), code
		return nil
	})
	if l.stdinW != nil {
		_ = l.stdinW.Close()
		l.stdinR, l.stdinW = nil, nil
	}
	l.streams.close()
	l.streams = nil
	if r.HostConfig.AutoRemove {
		l.code = code
		_ = d.remove(context.WithoutCancel(ctx), r.ID, true)
	}
}

// spec is the OCI spec for r on rootfs (mounted: users are looked up in
// the image's /etc/passwd and /etc/group).
// nsPath is the network namespace to join ("" with the host's network).
func (d *Daemon) spec(r containers.Record, rootfs, nsPath string) (*specs.Spec, error) {
	u, err := lookupUser(rootfs, r.Config.User)
	if err != nil {
		return nil, err
	}
	network := executor.NetworkNone
	if nsPath == "" {
		network = executor.NetworkHost
	}
	hostname := r.Config.Hostname
	if hostname == "" {
		hostname = r.ID[:12]
	}
	env := r.Config.Env
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		env = append(slices.Clone(env), "HOME="+u.Home) // as Docker sets it
	}
	s, err := executor.DefaultSpec(append([]string{r.Path}, r.Args...), rootfs, executor.SpecOpts{
		Env: env, Cwd: r.Config.WorkingDir, UID: uint32(u.Uid), GID: uint32(u.Gid), Hostname: hostname,
		Network: network, NetworkPath: nsPath, Terminal: r.Config.Tty, ReadOnly: r.HostConfig.ReadonlyRootfs,
	})
	if err != nil {
		return nil, err
	}
	for _, g := range u.Sgids {
		s.Process.User.AdditionalGids = append(s.Process.User.AdditionalGids, uint32(g))
	}
	if err := withResources(s, r.HostConfig); err != nil {
		return nil, err
	}
	return s, nil
}

// lookupUser resolves USER (name or uid, optionally :group or :gid) in
// the rootfs's /etc/passwd and /etc/group, read through an os.Root so an
// image's symlinks cannot point the daemon at the host's files. Numeric
// ids need no entry; the default is root.
func lookupUser(rootfs, spec string) (*user.ExecUser, error) {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	open := func(name string) io.Reader {
		f, err := root.Open(name)
		if err != nil {
			return nil // no such file: numeric ids only
		}
		data, _ := io.ReadAll(io.LimitReader(f, 1<<20))
		f.Close()
		return bytes.NewReader(data)
	}
	u, err := user.GetExecUser(spec, &user.ExecUser{Home: "/"}, open("etc/passwd"), open("etc/group"))
	if err != nil {
		return nil, fmt.Errorf("user %q: %w: %w", spec, err, drivers.ErrInvalidArgument)
	}
	return u, nil
}

// finish waits for the container's exit, records it, cleans up the
// container and its mount, ends the attached streams, wakes the waiters
// and, with AutoRemove, removes the container.
func (d *Daemon) finish(id string, l *live, c executor.Container, log *logs.Writer, copied, finished chan struct{}) {
	ctx := context.Background()
	exit, werr := c.Wait(ctx)
	d.endHealth(l)
	d.statsStopped(id)
	if copied != nil {
		// The terminal's last output is read before Delete closes it.
		drained(copied, consoleDrain)
	}
	delErr := c.Delete(ctx) // closes the console, which ends its copy
	if copied != nil {
		<-copied
	}
	rootfs := d.rootfs(id)
	errs := errors.Join(werr, delErr, log.Close(), mount.UnmountAll(rootfs), d.stopNetwork(id))
	if rec, err := d.ctrs.Get(id); err == nil {
		errs = errors.Join(errs, d.unmountVolumes(rec))
	}
	if werr != nil {
		exit.Code = 255
	}
	r, err := d.ctrs.Update(id, func(r *containers.Record) error {
		st := containers.State{Status: containers.Exited, ExitCode: exit.Code, OOMKilled: exit.OOMKilled,
			StartedAt: r.State.StartedAt, FinishedAt: exit.At.UTC(), Error: r.State.Error, Health: r.State.Health}
		if errs != nil {
			st.Error = errs.Error()
		}
		return r.SetState(st)
	})
	if err == nil {
		if exit.OOMKilled {
			d.containerEvent(r, eventtypes.ActionOOM, nil)
		}
		d.containerEvent(r, eventtypes.ActionDie, exitAttrs(exit.Code, r.State.FinishedAt.Sub(r.State.StartedAt)))
	}
	l.mu.Lock()
	if l.stdinW != nil {
		// Ends the copy into the container; a next start gets a new pipe.
		_ = l.stdinW.Close()
		l.stdinR, l.stdinW = nil, nil
	}
	l.streams.close()
	l.streams = nil
	l.c = nil
	l.code = exit.Code
	if err == nil {
		d.afterExit(id, l)
	}
	close(l.exit)
	l.exit = make(chan struct{})
	l.mu.Unlock()
	if err == nil && r.HostConfig.AutoRemove {
		if err := d.remove(ctx, id, true); err != nil {
			d.cfg.Log.Error("auto-removing a container failed; docker rm it", "container", id, "err", err)
			_, _ = d.ctrs.Update(id, func(r *containers.Record) error {
				r.State.Error = "auto-remove: " + err.Error()
				return nil
			})
			l.mu.Lock()
			l.removeErr = err
			close(l.removed)
			l.removed = make(chan struct{})
			l.mu.Unlock()
		}
	}
	// Last: a stop or shutdown waiting on it may close the drivers next.
	close(finished)
}

// WaitContainer answers POST /containers/{id}/wait. It checks the
// container and registers the waiter, then calls ready (the API writes the
// response's headers there: the CLI waits for them before it starts the
// container) and blocks until the condition holds or ctx ends.
func (d *Daemon) WaitContainer(ctx context.Context, ref string, cond container.WaitCondition, ready func()) (container.WaitResponse, error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return container.WaitResponse{}, err
	}
	l := d.live(r.ID)
	l.mu.Lock()
	var ch <-chan struct{}
	switch cond {
	case container.WaitConditionNextExit:
		ch = l.exit
	case container.WaitConditionRemoved:
		ch = l.removed
	case "", container.WaitConditionNotRunning:
		if l.c != nil || l.rs.pending != nil { // restarting counts as running, as in dockerd
			ch = l.exit
		}
	default:
		l.mu.Unlock()
		return container.WaitResponse{}, fmt.Errorf("invalid condition %q: %w", cond, drivers.ErrInvalidArgument)
	}
	l.mu.Unlock()
	ready()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return container.WaitResponse{}, ctx.Err()
		}
	}
	l.mu.Lock()
	code, removeErr := l.code, l.removeErr
	l.mu.Unlock()
	if ch == nil {
		// Read again: a run that ended between the first read and the
		// check above has its exit in the record by now (finish records
		// it before it lets go of the container); the first read could
		// still say running, exit code 0 (`docker kill` then `docker
		// wait` answered 0 instead of 137, seen in CI).
		if now, err := d.ctrs.Get(r.ID); err == nil {
			r = now
		}
		code = r.State.ExitCode
	}
	resp := container.WaitResponse{StatusCode: int64(code)}
	if cond == container.WaitConditionRemoved && removeErr != nil {
		resp.Error = &container.WaitExitError{Message: removeErr.Error()}
	}
	return resp, nil
}

// StopContainer answers POST /containers/{id}/stop: the stop signal
// (SIGTERM unless the config names another), then SIGKILL after timeout
// seconds (default 10; -1 waits for ever).
func (d *Daemon) StopContainer(ctx context.Context, ref, signal string, timeout *int) (err error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	canceled := d.manualStop(r.ID, l, true)
	l.mu.Lock()
	c, finished := l.c, l.finished
	l.health.halt() // no probe while it stops, as dockerd
	l.mu.Unlock()
	if c == nil {
		if canceled {
			return nil // a restart was pending
		}
		return api.ErrNotModified
	}
	if signal == "" {
		signal = r.Config.StopSignal
	}
	sig, err := parseSignal(signal, unix.SIGTERM)
	if err != nil {
		return err
	}
	secs := 10
	if r.Config.StopTimeout != nil {
		secs = *r.Config.StopTimeout
	}
	if timeout != nil {
		secs = *timeout
	}
	if err := c.Kill(ctx, sig); err != nil && !errors.Is(err, executor.ErrNotRunning) {
		return err
	}
	d.containerEvent(r, eventtypes.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	d.thawAfterKill(ctx, r.ID, l, false)
	defer func() {
		if err == nil {
			d.containerEvent(r, eventtypes.ActionStop, nil)
		}
	}()
	var grace <-chan time.Time
	if secs >= 0 {
		grace = time.After(time.Duration(secs) * time.Second)
	}
	select {
	case <-finished:
		return nil
	case <-grace:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.containerEvent(r, eventtypes.ActionKill, map[string]string{"signal": strconv.Itoa(int(unix.SIGKILL))})
	return d.killAndWait(ctx, l)
}

// killAndWait SIGKILLs the container and waits until finish cleaned up.
func (d *Daemon) killAndWait(ctx context.Context, l *live) error {
	l.mu.Lock()
	c, finished := l.c, l.finished
	l.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.Kill(ctx, unix.SIGKILL); err != nil && !errors.Is(err, executor.ErrNotRunning) {
		return err
	}
	select {
	case <-finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KillContainer answers POST /containers/{id}/kill.
func (d *Daemon) KillContainer(ctx context.Context, ref, signal string) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	sig, err := parseSignal(signal, unix.SIGKILL)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	if d.manualStop(r.ID, l, isStopSignal(r, sig)) {
		return nil // the pending restart was what would have run
	}
	l.mu.Lock()
	c := l.c
	l.mu.Unlock()
	if c == nil {
		return fmt.Errorf("container %s is not running: %w", r.Name, drivers.ErrFailedPrecondition)
	}
	if err := c.Kill(ctx, sig); err != nil {
		return err
	}
	d.containerEvent(r, eventtypes.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	if isStopSignal(r, sig) {
		d.thawAfterKill(ctx, r.ID, l, true)
	}
	return nil
}

// parseSignal reads a signal as dockerd does: a number, or a name with
// or without SIG.
func parseSignal(s string, def syscall.Signal) (syscall.Signal, error) {
	if s == "" {
		return def, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal: %s: %w", s, drivers.ErrInvalidArgument)
}

// recover runs at start: what a previous daemon left running is purged
// from the executor, unmounted, and reported exited.
func (d *Daemon) recover(ctx context.Context) error {
	ids, err := d.exec.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, d.exec.Purge(ctx, id))
	}
	recs, err := d.ctrs.List()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := mount.UnmountAll(d.rootfs(r.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if r.State.Status != containers.Running && r.State.Status != containers.Paused {
			continue
		}
		_, err := d.ctrs.Update(r.ID, func(r *containers.Record) error {
			return r.SetState(containers.State{Status: containers.Exited, ExitCode: 255, StartedAt: r.State.StartedAt,
				FinishedAt: time.Now().UTC(), Error: "layerlabd stopped while the container ran (killed or crashed): the daemon restarted and killed what was left of it",
				Health: r.State.Health})
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StopAll kills every running container and waits for their clean-up; the
// daemon calls it when it shuts down, so nothing is left running or
// mounted.
func (d *Daemon) StopAll(ctx context.Context) error {
	d.mu.Lock()
	var all []*live
	for _, l := range d.lives {
		all = append(all, l)
	}
	d.mu.Unlock()
	var errs []error
	for _, l := range all {
		errs = append(errs, d.killAndWait(ctx, l))
	}
	return errors.Join(errs...)
}
