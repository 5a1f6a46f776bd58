package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// execDrain bounds how long an exec'd process's Wait waits for its
// output after it exited: a background child it left in the container
// may hold the pipes for as long as the container runs.
const execDrain = 2 * time.Second

// runcProcess is a process runc started detached (a container's init or
// an exec), re-parented to us: its stdio ends, its pty and its exit.
type runcProcess struct {
	what    string
	cmd     *exec.Cmd // the runc command that starts it
	logFile string    // runc's own log, for its error messages
	pid     int

	childEnds  []*os.File // the pipe ends runc passes on; closed once it has
	stdinW     *os.File
	stdin      io.Reader
	outs       []pipeCopy
	copies     sync.WaitGroup
	console    *os.File
	consoleLn  *net.UnixListener
	consoleDir string

	done    chan struct{}
	exit    Exit
	waitErr error
}

// pipeCopy is one output pipe and where it goes.
type pipeCopy struct {
	r   *os.File
	dst io.Writer
}

// startRunc starts `runc args...` with stdio wired for a detached process:
// pipes for the streams (runc hands them to the process), or a console
// socket over which runc sends the pty's master.
func (e *Runc) startRunc(ctx context.Context, what, dir string, stdio Stdio, args ...string) (_ *runcProcess, err error) {
	p := &runcProcess{what: what, done: make(chan struct{}), logFile: filepath.Join(dir, "runc-"+args[0]+".log")}
	defer func() {
		if err != nil {
			p.closeAll()
		}
	}()
	cmd := exec.CommandContext(ctx, e.binary, "--root", e.state, "--log", p.logFile)
	if stdio.Terminal {
		// A short path: a socket's path must fit in 108 bytes.
		if p.consoleDir, err = os.MkdirTemp("", "layerlab-console-"); err != nil {
			return nil, fmt.Errorf("%s: console socket: %w", what, err)
		}
		sock := filepath.Join(p.consoleDir, "s")
		if p.consoleLn, err = net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"}); err != nil {
			return nil, fmt.Errorf("%s: console socket: %w", what, err)
		}
		args = append(args[:1], append([]string{"--console-socket", sock}, args[1:]...)...)
	} else {
		for _, o := range []struct {
			dst io.Writer
			set func(*os.File)
		}{{stdio.Stdout, func(f *os.File) { cmd.Stdout = f }}, {stdio.Stderr, func(f *os.File) { cmd.Stderr = f }}} {
			if o.dst == nil {
				continue
			}
			r, w, err := os.Pipe()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			o.set(w)
			p.childEnds = append(p.childEnds, w)
			p.outs = append(p.outs, pipeCopy{r: r, dst: o.dst})
		}
		if stdio.Stdin != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			cmd.Stdin = r
			p.childEnds = append(p.childEnds, r)
			p.stdinW, p.stdin = w, stdio.Stdin
		}
	}
	cmd.Args = append(cmd.Args, args...)
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start runc: %w", what, err)
	}
	return p, nil
}

// stderrText is what runc said about err: the last error in its log.
func (p *runcProcess) stderrText(err error) string {
	b, _ := os.ReadFile(p.logFile)
	var last string
	for _, line := range strings.Split(string(b), "\n") {
		var entry struct{ Msg, Level string }
		if json.Unmarshal([]byte(line), &entry) == nil && (entry.Level == "error" || entry.Level == "fatal") {
			last = entry.Msg
		} else if strings.Contains(line, "level=error") || strings.Contains(line, "level=fatal") {
			last = line
		}
	}
	if last == "" {
		return err.Error()
	}
	return last
}

// childrenStarted runs once runc has handed the process its ends: ours
// of them close, the pty arrives, and the copies start.
func (p *runcProcess) childrenStarted() error {
	for _, f := range p.childEnds {
		_ = f.Close()
	}
	p.childEnds = nil
	if p.consoleLn != nil {
		_ = p.consoleLn.SetDeadline(time.Now().Add(10 * time.Second))
		conn, err := p.consoleLn.AcceptUnix()
		if err != nil {
			return fmt.Errorf("%s: console: %w", p.what, err)
		}
		f, err := conn.File()
		conn.Close()
		if err != nil {
			return fmt.Errorf("%s: console: %w", p.what, err)
		}
		p.console, err = recvConsole(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: console: %w", p.what, err)
		}
		p.closeConsoleSocket()
	}
	for _, o := range p.outs {
		p.copies.Add(1)
		go func() {
			defer p.copies.Done()
			_, _ = io.Copy(o.dst, o.r)
			o.r.Close()
		}()
	}
	if p.stdin != nil {
		go func() {
			_, _ = io.Copy(p.stdinW, p.stdin)
			_ = p.stdinW.Close()
		}()
	}
	return nil
}

func (p *runcProcess) closeConsoleSocket() {
	if p.consoleLn != nil {
		p.consoleLn.Close()
		p.consoleLn = nil
	}
	if p.consoleDir != "" {
		_ = os.RemoveAll(p.consoleDir)
		p.consoleDir = ""
	}
}

// closeAll closes every end we hold, for a process that will not run or
// has been deleted.
func (p *runcProcess) closeAll() {
	for _, f := range p.childEnds {
		_ = f.Close()
	}
	p.childEnds = nil
	p.closeConsoleSocket()
	if p.stdinW != nil {
		_ = p.stdinW.Close()
	}
	if p.console != nil {
		_ = p.console.Close()
	}
}

// reap waits for the process with wait, lets its output drain (an exec's
// for at most execDrain), calls onExit and publishes the exit.
func (p *runcProcess) reap(wait func() (Exit, error), drain time.Duration, onExit func(*Exit)) {
	defer close(p.done)
	p.exit, p.waitErr = wait()
	drained := make(chan struct{})
	go func() { p.copies.Wait(); close(drained) }()
	if drain > 0 {
		select {
		case <-drained:
		case <-time.After(drain):
		}
	} else {
		<-drained
	}
	if onExit != nil && p.waitErr == nil {
		onExit(&p.exit)
	}
}

func (p *runcProcess) Pid() int          { return p.pid }
func (p *runcProcess) Console() *os.File { return p.console }

func (p *runcProcess) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-p.done:
		return p.exit, p.waitErr
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
}

// Kill signals the process, unless it has been reaped (its pid may be
// someone else's by then).
func (p *runcProcess) Kill(ctx context.Context, sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("%s: kill %v: %w", p.what, sig, ErrNotRunning)
	default:
	}
	if err := unix.Kill(p.pid, sig); err != nil {
		return fmt.Errorf("%s: kill %v: %w: %w", p.what, sig, err, ErrNotRunning)
	}
	return nil
}

func (p *runcProcess) Resize(ctx context.Context, width, height uint16) error {
	if p.console == nil {
		return fmt.Errorf("%s: resize: no terminal: %w", p.what, drivers.ErrFailedPrecondition)
	}
	if err := unix.IoctlSetWinsize(int(p.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width}); err != nil {
		return fmt.Errorf("%s: resize: %w", p.what, err)
	}
	return nil
}

// Exec implements Container: `runc exec --detach` with the process's
// spec in a file; the process is re-parented to us like the init.
func (c *runcContainer) Exec(ctx context.Context, spec *specs.Process, stdio Stdio) (Process, error) {
	what := "exec in container " + c.id
	if spec == nil || len(spec.Args) == 0 {
		return nil, fmt.Errorf("%s: no command to run: %w", what, drivers.ErrInvalidArgument)
	}
	if stdio.Terminal != spec.Terminal {
		return nil, fmt.Errorf("%s: stdio.Terminal=%v but the spec's terminal=%v: %w", what, stdio.Terminal, spec.Terminal, drivers.ErrInvalidArgument)
	}
	select {
	case <-c.proc.done:
		return nil, fmt.Errorf("%s: %w", what, ErrNotRunning)
	default:
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "exec-" + hex.EncodeToString(suffix)
	dir := filepath.Join(c.bundle, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer os.RemoveAll(dir)
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, err, drivers.ErrInvalidArgument)
	}
	procFile, pidFile := filepath.Join(dir, "process.json"), filepath.Join(dir, "pid")
	if err := os.WriteFile(procFile, data, 0o600); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	p, err := c.e.startRunc(ctx, what, dir, stdio, "exec", "--detach", "--process", procFile, "--pid-file", pidFile, c.id)
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Wait(); err != nil {
		msg := p.stderrText(err)
		p.closeAll()
		if st, serr := c.Status(ctx); serr == nil && st != Running {
			return nil, fmt.Errorf("%s: %s: %w", what, msg, ErrNotRunning)
		}
		return nil, fmt.Errorf("%s: %w", what, runcError{op: "exec", msg: msg})
	}
	if p.pid, err = readPid(pidFile); err != nil {
		p.closeAll()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := p.childrenStarted(); err != nil {
		_ = unix.Kill(p.pid, unix.SIGKILL)
		_, _ = waitPid(p.pid)
		p.closeAll()
		return nil, err
	}
	pid := p.pid
	go p.reap(func() (Exit, error) { return waitPid(pid) }, execDrain, nil)
	return p, nil
}
