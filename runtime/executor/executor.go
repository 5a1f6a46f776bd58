// Package executor runs OCI-spec containers for layerlabd. Executor is the
// interface the daemon drives (create, later start, wait, kill, pause,
// exec, resize, delete; stdio to io.Writers or a pseudo-terminal; OOM
// kills reported; Purge for what a crashed daemon left). Libcontainer
// implements it with runc's libcontainer in process, so no shim or runc
// binary sits between the daemon and its containers; Runc implements it
// by running the runc binary (layerlabd --runtime runc), the daemon
// reaping each container as its child subreaper. TestRuncExecutor runs
// the same test suite on both.
// DefaultSpec builds the spec a Docker create gives: Docker's capabilities,
// masked and read-only paths, mounts and device rules, no new privileges,
// mount/pid/ipc/uts namespaces, and network none (a new netns with only lo)
// or host.
//
// libcontainer starts a container by re-executing the running binary as
// "<binary> init": every binary that imports this package must call Init
// first thing in main (tests: in TestMain). The package imports
// libcontainer/nsenter, whose cgo constructor joins the namespaces before
// the Go runtime starts, so binaries that use it need cgo; and it keeps
// the main goroutine on the main thread (see init.go for why).
//
// Exit codes follow the shell: 128+signal for a signal death. A container's
// command is its pid namespace's init, which the kernel shields from
// signals it has no handler for, from inside the namespace and, except
// SIGKILL and SIGSTOP, from outside: `sh -c 'kill -9 $$'` survives, and
// SIGTERM stops only a command that handles it, as with Docker without
// --init.
//
// Seccomp: built with the seccomp tag (make does, with Debian's
// libseccomp-dev), DefaultSpec applies Docker's default profile
// (moby/profiles); without the tag libcontainer cannot filter system calls
// and the spec carries no profile (SeccompFilters says which).
package executor

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
)

// Errors. Each wraps one of drivers' sentinels so callers (the API layer)
// map them to status codes with errors.Is.
var (
	ErrNotRunning = fmt.Errorf("container is not running: %w", drivers.ErrFailedPrecondition)
	ErrNotPaused  = fmt.Errorf("container is not paused: %w", drivers.ErrFailedPrecondition)
)

// Status is what a container is doing, as Docker's State.Status names it.
type Status string

// The statuses a container goes through.
const (
	Created Status = "created" // its init waits for Start
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped" // exited; Delete cleans up
)

// Stdio is where a container's standard streams go. A nil field means
// /dev/null. Stdout and Stderr are written until the container's last
// process closes them; Wait returns after they are drained.
type Stdio struct {
	Stdin  io.Reader // copied into the container; read until EOF or exit
	Stdout io.Writer
	Stderr io.Writer
	// Terminal gives the container a pseudo-terminal as stdin, stdout and
	// stderr (spec.Process.Terminal must say the same); the daemon reads
	// and writes it through Container.Console.
	Terminal bool
}

// Exit is how a container's init process ended.
type Exit struct {
	Code   int            // the exit status, 128+signal for a signal death (as a shell reports it)
	Signal syscall.Signal // the signal that killed it, 0 for a normal exit
	// OOMKilled says the kernel's OOM killer killed a process of the
	// container (the init or another) for exceeding its memory limit.
	OOMKilled bool
	At        time.Time
}

// Executor creates containers. Implementations keep their state under
// their own root, one directory per container, which Delete removes.
type Executor interface {
	// Create makes the container id from spec (spec.Root.Path must be an
	// absolute path to a mounted root filesystem) with its namespaces,
	// cgroup and init process, which waits for Start before it execs
	// spec.Process.Args. Wait may be called from now on.
	Create(ctx context.Context, id string, spec *specs.Spec, stdio Stdio) (Container, error)
	// List returns the ids of the containers under the executor's root,
	// including those a previous daemon left behind.
	List(ctx context.Context) ([]string, error)
	// Purge kills and destroys a container this process has no handle
	// for (one a crashed daemon left behind): its processes, cgroups and
	// state directory. A container that does not exist is not an error.
	Purge(ctx context.Context, id string) error
	// Close releases what the executor made for all its containers (the
	// parent cgroup, when no container is left in it). Containers still
	// running keep running.
	Close() error
}

// Container is a handle on one created container.
type Container interface {
	ID() string
	// Start lets the init process exec the user's command. It does not
	// wait for the command to end.
	Start(ctx context.Context) error
	// Wait returns how the init process ended, blocking until it has or
	// ctx is done. It may be called any number of times, concurrently,
	// before or after Start.
	Wait(ctx context.Context) (Exit, error)
	// Kill sends sig to the init process (SIGKILL also thaws a paused
	// container, so it dies).
	Kill(ctx context.Context, sig syscall.Signal) error
	// Pause freezes every process of the container; Resume thaws them.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Pids lists the container's processes as host pids.
	Pids(ctx context.Context) ([]int, error)
	Status(ctx context.Context) (Status, error)
	// Console is the pseudo-terminal's master when Stdio.Terminal was set,
	// else nil. Delete closes it.
	Console() *os.File
	// Resize sets the terminal's size; ErrFailedPrecondition without one.
	Resize(ctx context.Context, width, height uint16) error
	// Exec starts another process in the running container (docker
	// exec), in its namespaces and cgroup; spec.Terminal must match
	// stdio.Terminal. The container's death ends it.
	Exec(ctx context.Context, spec *specs.Process, stdio Stdio) (Process, error)
	// Update changes the running container's cgroup limits (docker
	// update): the fields res sets, the others and the device rules stay.
	Update(ctx context.Context, res *specs.LinuxResources) error
	// Delete kills what still runs, waits for the init to be reaped and
	// destroys the container: cgroups and state directory. The root
	// filesystem is the caller's and stays mounted.
	Delete(ctx context.Context) error
}

// Process is a process Exec started in a container.
type Process interface {
	Pid() int
	// Wait is as Container.Wait, for this process.
	Wait(ctx context.Context) (Exit, error)
	Kill(ctx context.Context, sig syscall.Signal) error
	Resize(ctx context.Context, width, height uint16) error
	// Console is the terminal's master, nil without one; the caller
	// closes it once it has read what it wants (after the process
	// exited, the output still buffered there stays readable).
	Console() *os.File
}
