package executor_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// TestPauseResume freezes and thaws a running container through the v1
// freezer, then deletes it while frozen (Delete must still kill it).
func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	c := e.start(t, []string{"sleep", "100"})
	ctx := testContext(t)
	freezer := filepath.Join("/sys/fs/cgroup/freezer", testCgroupParent, c.ID(), "freezer.state")
	expect := func(want executor.Status, state string) {
		t.Helper()
		if st, err := c.Status(ctx); err != nil || st != want {
			t.Fatalf("status = %q, %v; want %q", st, err, want)
		}
		if data, err := os.ReadFile(freezer); err != nil || strings.TrimSpace(string(data)) != state {
			t.Fatalf("%s = %q, %v; want %s", freezer, data, err, state)
		}
	}
	expect(executor.Running, "THAWED")
	if err := c.Resume(ctx); !errors.Is(err, executor.ErrNotPaused) {
		t.Errorf("resume a running container: %v, want ErrNotPaused", err)
	}
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	expect(executor.Paused, "FROZEN")
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	expect(executor.Running, "THAWED")
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatalf("delete a paused container: %v", err)
	}
	if exit, err := c.Wait(ctx); err != nil || exit.Code != 137 {
		t.Errorf("exit = %+v, %v; want 137", exit, err)
	}
	if err := c.Pause(ctx); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("pause a deleted container: %v, want ErrFailedPrecondition", err)
	}
}

// TestPurge plays a restarted daemon: a second executor on the same root,
// without a handle, finds the first one's running container and destroys
// it with its processes and cgroups.
func TestPurge(t *testing.T) {
	e := newEnv(t)
	c, pids, cgroups := e.sleeper(t)
	ctx := testContext(t)
	again := e.executor(t)
	ids, err := again.List(ctx)
	if err != nil || !slices.Contains(ids, c.ID()) {
		t.Fatalf("list = %v, %v; want it to hold %s", ids, err, c.ID())
	}
	if err := again.Purge(ctx, c.ID()); err != nil {
		t.Fatal(err)
	}
	if exit, err := c.Wait(ctx); err != nil || exit.Signal != syscall.SIGKILL {
		t.Errorf("exit = %+v, %v; want a SIGKILL death", exit, err)
	}
	e.assertGone(t, c, cgroups, pids)
	if err := again.Purge(ctx, c.ID()); err != nil {
		t.Errorf("purge a purged container: %v", err)
	}
}

// TestTerminal gives a container a pseudo-terminal through libcontainer's
// console socket and talks to it through the master.
func TestTerminal(t *testing.T) {
	e := newEnv(t)
	id := newID(t)
	rootfs := e.mountSnapshot(t, id, e.image)
	spec, err := executor.DefaultSpec([]string{"sh", "-c", `test -t 0 && test -t 1 && echo isatty $TERM; read x; echo got $x; stty size`}, rootfs, executor.SpecOpts{Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	spec.Process.ConsoleSize = &specs.Box{Height: 25, Width: 80}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.ex.Create(ctx, id+"x", spec, executor.Stdio{}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("terminal spec without a terminal stdio: %v, want ErrInvalidArgument", err)
	}
	c, err := e.ex.Create(ctx, id, spec, executor.Stdio{Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Delete(context.Background()); err != nil {
			t.Errorf("delete: %v", err)
		}
	})
	console := c.Console()
	if console == nil {
		t.Fatal("no console")
	}
	output := readConsole(console)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The shell waits for its line, so the size is set before stty reads it.
	if err := c.Resize(ctx, 100, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := console.Write([]byte("abc\n")); err != nil {
		t.Fatal(err)
	}
	exit, err := c.Wait(ctx)
	if err != nil || exit.Code != 0 {
		t.Fatalf("exit = %+v, %v", exit, err)
	}
	got := awaitConsole(t, output)
	if !strings.Contains(got, "isatty xterm\n") || !strings.Contains(got, "got abc\n40 100\n") {
		t.Errorf("console output %q, want isatty xterm, got abc and the size 40 100", got)
	}
}

// TestOOM runs a container into its memory limit: the kernel's OOM killer
// kills it and Wait says so; a container that exits normally is not
// reported OOM-killed.
func TestOOM(t *testing.T) {
	e := newEnv(t)
	limit := func(s *specs.Spec) {
		n := int64(32 << 20)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &n, Swap: &n}
	}
	// tail keeps the last line, and /dev/zero has no newline: it
	// buffers until the limit.
	c, exit := e.run(t, []string{"tail", "/dev/zero"}, executor.SpecOpts{}, nil, limit)
	if !exit.OOMKilled || exit.Code != 137 {
		t.Errorf("exit = %+v, want OOM-killed with 137 (stderr %q)", exit, c.stderr.String())
	}
	if _, exit := e.run(t, []string{"true"}, executor.SpecOpts{}, nil, limit); exit.OOMKilled || exit.Code != 0 {
		t.Errorf("true: exit = %+v, want 0 and no OOM kill", exit)
	}
}

// TestCreateErrors checks that bad requests are refused with the sentinel
// the API maps to a status code, and leave nothing behind.
func TestCreateErrors(t *testing.T) {
	e := newEnv(t)
	c := e.create(t, []string{"true"}, executor.SpecOpts{}, nil)
	ctx := testContext(t)
	spec, err := executor.DefaultSpec([]string{"true"}, filepath.Join(e.mnts, c.ID()), executor.SpecOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ex.Create(ctx, c.ID(), spec, executor.Stdio{}); !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Errorf("duplicate id: %v, want ErrAlreadyExists", err)
	}
	for _, id := range []string{"", "..", "a/b", "../x"} {
		if _, err := e.ex.Create(ctx, id, spec, executor.Stdio{}); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("id %q: %v, want ErrInvalidArgument", id, err)
		}
	}
	relative := *spec
	relative.Root = &specs.Root{Path: "rootfs"}
	if _, err := e.ex.Create(ctx, newID(t), &relative, executor.Stdio{}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("relative root: %v, want ErrInvalidArgument", err)
	}
	// A command the root filesystem lacks fails in the init, before
	// Create returns; the half-made container is destroyed.
	missing := *spec
	proc := *spec.Process
	proc.Args = []string{"/no/such/command"}
	missing.Process = &proc
	id := newID(t)
	if _, err := e.ex.Create(ctx, id, &missing, executor.Stdio{}); err == nil || !strings.Contains(err.Error(), "/no/such/command") {
		t.Errorf("missing command: %v, want an error naming it", err)
	}
	for _, dir := range cgroupDirs(t, id) {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed create left cgroup %s (%v)", dir, err)
		}
	}
	if ids, err := e.ex.List(ctx); err != nil || !slices.Equal(ids, []string{c.ID()}) {
		t.Errorf("list = %v, %v; want only %s", ids, err, c.ID())
	}
}
