package executor

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// process is one process this executor started in a container, its init
// or one Exec added, with the plumbing of its standard streams.
type process struct {
	what string // "container ID" or "exec in container ID", for errors
	lp   *libcontainer.Process

	stdin         io.Reader  // what copyStdin copies, nil for none
	childFiles    []*os.File // ends handed to the process, closed once it started
	stdinW        *os.File   // our end of the stdin pipe
	consoleSocket *os.File   // our end of the console socket pair
	console       *os.File   // the pty master

	done    chan struct{} // closed when the process has been reaped
	exit    Exit          // valid after done
	waitErr error         // valid after done
}

// newProcess turns the spec's process into libcontainer's and wires its
// stdio. For an init, the capabilities are in the config specconv made;
// rlimits are the process's own (specconv leaves them to its caller).
func newProcess(what string, p *specs.Process, stdio Stdio, init bool) (*process, error) {
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("%s: no command to run: %w", what, drivers.ErrInvalidArgument)
	}
	if stdio.Terminal != p.Terminal {
		return nil, fmt.Errorf("%s: stdio.Terminal=%v but the spec's process.terminal=%v: %w", what, stdio.Terminal, p.Terminal, drivers.ErrInvalidArgument)
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
		Init:            init,
	}
	rl, err := rlimits(p.Rlimits)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	lp.Rlimits = rl
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth, lp.ConsoleHeight = uint16(p.ConsoleSize.Width), uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil && !init {
		lp.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Permitted: c.Permitted, Inheritable: c.Inheritable, Ambient: c.Ambient}
	}
	pr := &process{what: what, lp: lp, done: make(chan struct{})}
	if err := pr.attach(stdio); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return pr, nil
}

// attach wires stdin and the console socket. Stdin goes through a pipe we
// copy into ourselves: given a plain io.Reader, os/exec would make Wait
// wait for that reader's EOF, which may never come after the process
// exits.
func (p *process) attach(stdio Stdio) error {
	if stdio.Terminal {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("console socket: %w", err)
		}
		p.consoleSocket = os.NewFile(uintptr(fds[0]), "console-parent")
		child := os.NewFile(uintptr(fds[1]), "console-child")
		p.childFiles = append(p.childFiles, child)
		p.lp.ConsoleSocket = child
		// With a terminal the pty is the process's stdio; the
		// daemon reads and writes the master.
		p.lp.Stdout, p.lp.Stderr = nil, nil
		return nil
	}
	if stdio.Stdin == nil {
		return nil
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdin pipe: %w", err)
	}
	p.childFiles = append(p.childFiles, r)
	p.stdinW, p.lp.Stdin, p.stdin = w, r, stdio.Stdin
	return nil
}

// start runs the process with run (libcontainer's Start for an init, Run
// for an exec), receives its console and starts copying stdin and the
// reaper, which calls onExit (if not nil) before publishing the exit.
func (p *process) start(run func(*libcontainer.Process) error, onExit func(*Exit)) error {
	err := run(p.lp)
	// The pipe and socket ends the process got are its own now (it has
	// them open or failed): close ours so EOF and errors reach the
	// right side.
	for _, f := range p.childFiles {
		_ = f.Close()
	}
	p.childFiles = nil
	if err != nil {
		p.closeParent()
		return fmt.Errorf("%s: start: %w", p.what, err)
	}
	if p.consoleSocket != nil {
		if p.console, err = recvConsole(p.consoleSocket); err != nil {
			_ = p.lp.Signal(unix.SIGKILL)
			_, _ = p.lp.Wait()
			p.closeParent()
			return fmt.Errorf("%s: console: %w", p.what, err)
		}
		// The socket carried the one fd it is for; an exec has no
		// Delete to close it later.
		_ = p.consoleSocket.Close()
		p.consoleSocket = nil
	}
	if p.stdin != nil {
		go p.copyStdin()
	}
	go p.reap(onExit)
	return nil
}

// copyStdin copies into the process until the source ends (then the
// process reads EOF) or the process has gone (the write fails).
func (p *process) copyStdin() {
	_, _ = io.Copy(p.stdinW, p.stdin)
	_ = p.stdinW.Close()
}

// discard closes every pipe and socket end of a process that will not be
// started.
func (p *process) discard() {
	for _, f := range p.childFiles {
		_ = f.Close()
	}
	p.closeParent()
}

// closeParent closes our ends of stdin and the console.
func (p *process) closeParent() {
	for _, f := range []*os.File{p.stdinW, p.consoleSocket, p.console} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// reap waits for the process exactly once (libcontainer's Wait may not be
// called twice) and publishes how it ended to every Wait.
func (p *process) reap(onExit func(*Exit)) {
	defer close(p.done)
	st, err := p.lp.Wait()
	p.exit.At = time.Now()
	if st == nil {
		p.waitErr = fmt.Errorf("%s: wait: %w", p.what, err)
		return
	}
	// A non-zero exit comes back as an *exec.ExitError too; the wait
	// status says all there is.
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		p.exit.Signal = ws.Signal()
		p.exit.Code = 128 + int(ws.Signal())
	} else {
		p.exit.Code = st.ExitCode()
	}
	if onExit != nil {
		onExit(&p.exit)
	}
}

func (p *process) Pid() int {
	pid, _ := p.lp.Pid()
	return pid
}

func (p *process) Console() *os.File { return p.console }

func (p *process) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
		return p.exit, p.waitErr
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

func (p *process) Resize(ctx context.Context, width, height uint16) error {
	if p.console == nil {
		return fmt.Errorf("%s: resize: no terminal: %w", p.what, drivers.ErrFailedPrecondition)
	}
	if err := unix.IoctlSetWinsize(int(p.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width}); err != nil {
		return fmt.Errorf("%s: resize: %w", p.what, err)
	}
	return nil
}

// recvConsole receives the pty master the process sends over the console
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
