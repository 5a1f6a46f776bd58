package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	// The cgroup manager sets up device rules only with this package
	// linked in; without it a spec with devices fails to create.
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// DefaultCgroupParent is the cgroup every container's own cgroup is made
// under when the spec names none: /layerlab/<id> in each v1 controller.
const DefaultCgroupParent = "/layerlab"

// Libcontainer is the in-process Executor.
type Libcontainer struct {
	root         string
	cgroupParent string
}

// NewLibcontainer returns an executor that keeps container state under
// root (e.g. /run/layerlab/libcontainer; a tmpfs, so a reboot forgets it)
// and puts containers whose spec has no cgroups path under cgroupParent
// ("" for DefaultCgroupParent).
func NewLibcontainer(root, cgroupParent string) (*Libcontainer, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("libcontainer root %q: want an absolute path: %w", root, drivers.ErrInvalidArgument)
	}
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("libcontainer root: %w", err)
	}
	return &Libcontainer{root: root, cgroupParent: cgroupParent}, nil
}

// Create implements Executor.
func (e *Libcontainer) Create(ctx context.Context, id string, spec *specs.Spec, stdio Stdio) (_ Container, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validID(id); err != nil {
		return nil, err
	}
	if spec == nil || spec.Process == nil || spec.Root == nil || spec.Linux == nil {
		return nil, fmt.Errorf("container %s: the spec needs process, root and linux sections: %w", id, drivers.ErrInvalidArgument)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return nil, fmt.Errorf("container %s: root %q: want an absolute path: %w", id, spec.Root.Path, drivers.ErrInvalidArgument)
	}
	if stdio.Terminal != spec.Process.Terminal {
		return nil, fmt.Errorf("container %s: stdio.Terminal=%v but spec.Process.Terminal=%v: %w", id, stdio.Terminal, spec.Process.Terminal, drivers.ErrInvalidArgument)
	}
	// Work on a copy: filling in the cgroups path must not change the
	// caller's spec.
	s := *spec
	linux := *spec.Linux
	s.Linux = &linux
	if s.Linux.CgroupsPath == "" {
		s.Linux.CgroupsPath = path.Join(e.cgroupParent, id)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: &s, NoNewKeyring: true})
	if err != nil {
		return nil, fmt.Errorf("container %s: spec: %w: %w", id, err, drivers.ErrInvalidArgument)
	}
	lc, err := libcontainer.Create(e.root, id, cfg)
	if errors.Is(err, libcontainer.ErrExist) {
		return nil, fmt.Errorf("container %s: %w", id, drivers.ErrAlreadyExists)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: create: %w", id, err)
	}
	c := &container{id: id, lc: lc, done: make(chan struct{})}
	defer func() {
		if err != nil {
			_ = lc.Destroy()
		}
	}()
	if c.proc, err = newProcess(spec.Process, stdio); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	stdin, err := c.attach(stdio)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	// The pipe and socket ends the init got are its own now (it has them
	// open or failed): close ours so EOF and errors reach the right side.
	closeChild := func() {
		for _, f := range c.childFiles {
			_ = f.Close()
		}
	}
	if err := lc.Start(c.proc); err != nil {
		closeChild()
		c.closeParent()
		return nil, fmt.Errorf("container %s: start init: %w", id, err)
	}
	closeChild()
	if stdio.Terminal {
		if c.console, err = recvConsole(c.consoleSocket); err != nil {
			_ = lc.Signal(unix.SIGKILL)
			_, _ = c.proc.Wait()
			c.closeParent()
			return nil, fmt.Errorf("container %s: console: %w", id, err)
		}
	}
	if stdin != nil {
		go c.copyStdin(stdin)
	}
	go c.reap()
	return c, nil
}

// List implements Executor.
func (e *Libcontainer) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(e.root)
	if err != nil {
		return nil, fmt.Errorf("libcontainer root: %w", err)
	}
	var ids []string
	for _, d := range entries {
		if d.IsDir() {
			ids = append(ids, d.Name())
		}
	}
	return ids, nil
}

// Purge implements Executor.
func (e *Libcontainer) Purge(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	lc, err := libcontainer.Load(e.root, id)
	if errors.Is(err, libcontainer.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: load: %w", id, err)
	}
	// With its own pid namespace, SIGKILL to init kills every process in
	// it; the kernel (or whoever is its parent) reaps the init.
	if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("container %s: kill: %w", id, err)
	}
	if err := waitStopped(ctx, lc); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if err := lc.Destroy(); err != nil {
		return fmt.Errorf("container %s: destroy: %w", id, err)
	}
	return nil
}

// validID checks id as libcontainer will, and before the id becomes part of
// a cgroup path: letters, digits and _+-. only, and not . or ..
func validID(id string) error {
	ok := id != "" && id != "." && id != ".."
	for _, r := range id {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-.", r))
	}
	if !ok {
		return fmt.Errorf("container id %q: want letters, digits, _, +, - and . only: %w", id, drivers.ErrInvalidArgument)
	}
	return nil
}

// waitStopped polls until lc's init has gone: a process that is not our
// child cannot be waited for.
func waitStopped(ctx context.Context, lc *libcontainer.Container) error {
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		st, err := lc.Status()
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if st == libcontainer.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the init to die: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}

// newProcess turns the spec's process into libcontainer's; the parts that
// apply to the whole container (capabilities, rlimits, no-new-privileges)
// are in the config specconv made.
func newProcess(p *specs.Process, stdio Stdio) (*libcontainer.Process, error) {
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("no command to run: %w", drivers.ErrInvalidArgument)
	}
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		Stdout:          stdio.Stdout,
		Stderr:          stdio.Stderr,
		Init:            true,
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(p.ConsoleSize.Width), uint16(p.ConsoleSize.Height)
	}
	return lp, nil
}

// container is a Libcontainer's handle on one container.
type container struct {
	id   string
	lc   *libcontainer.Container
	proc *libcontainer.Process

	childFiles    []*os.File // ends handed to the init, closed once it started
	stdinW        *os.File   // our end of the stdin pipe
	consoleSocket *os.File   // our end of the console socket pair
	console       *os.File   // the pty master

	done    chan struct{} // closed when the init has been reaped
	exit    Exit          // valid after done
	waitErr error         // valid after done
}

// attach wires stdin and the console socket. Stdin goes through a pipe we
// copy into ourselves: given a plain io.Reader, os/exec would make Wait
// wait for that reader's EOF, which may never come after the container
// exits. It returns the reader to copy from, nil for none.
func (c *container) attach(stdio Stdio) (io.Reader, error) {
	if stdio.Terminal {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		c.consoleSocket = os.NewFile(uintptr(fds[0]), "console-parent")
		child := os.NewFile(uintptr(fds[1]), "console-child")
		c.childFiles = append(c.childFiles, child)
		c.proc.ConsoleSocket = child
		// With a terminal the pty is the container's stdio; the
		// daemon reads and writes the master.
		c.proc.Stdout, c.proc.Stderr = nil, nil
		return nil, nil
	}
	if stdio.Stdin == nil {
		return nil, nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	c.childFiles = append(c.childFiles, r)
	c.stdinW = w
	c.proc.Stdin = r
	return stdio.Stdin, nil
}

// copyStdin copies src into the container until src ends (then the
// container reads EOF) or the container has gone (the write fails).
func (c *container) copyStdin(src io.Reader) {
	_, _ = io.Copy(c.stdinW, src)
	_ = c.stdinW.Close()
}

// closeParent closes our ends of stdin and the console.
func (c *container) closeParent() {
	for _, f := range []*os.File{c.stdinW, c.consoleSocket, c.console} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// reap waits for the init exactly once (libcontainer's Wait may not be
// called twice) and publishes how it ended to every Wait.
func (c *container) reap() {
	st, err := c.proc.Wait()
	c.exit.At = time.Now()
	if st == nil {
		c.waitErr = fmt.Errorf("container %s: wait: %w", c.id, err)
		close(c.done)
		return
	}
	// A non-zero exit comes back as an *exec.ExitError too; the wait
	// status says all there is.
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		c.exit.Signal = ws.Signal()
		c.exit.Code = 128 + int(ws.Signal())
	} else {
		c.exit.Code = st.ExitCode()
	}
	c.exit.OOMKilled = oomKilled(c.lc)
	close(c.done)
}

// oomKilled reads the container's memory cgroup's OOM kill counter, which
// the kernel has updated by the time the init is reaped (an OOM event
// notification could still be in flight then). The cgroup lives until
// Destroy. A counter that cannot be read counts as no OOM kill.
func oomKilled(lc *libcontainer.Container) bool {
	st, err := lc.State()
	if err != nil {
		return false
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
				return true
			}
		}
	}
	return false
}

func (c *container) ID() string { return c.id }

func (c *container) Console() *os.File { return c.console }

func (c *container) Start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.lc.Exec(); err != nil {
		return fmt.Errorf("container %s: start: %w: %w", c.id, err, drivers.ErrFailedPrecondition)
	}
	return nil
}

func (c *container) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-c.done:
		return c.exit, c.waitErr
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
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

// recvConsole receives the pty master the init sends over the console
// socket (libcontainer's protocol: the name as data, the fd as rights).
func recvConsole(socket *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(socket.Fd()), name, oob, 0)
	if err != nil {
		return nil, fmt.Errorf("recvmsg: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: want one control message (%v): %w", err, drivers.ErrUnavailable)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: want one fd (%v): %w", err, drivers.ErrUnavailable)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
