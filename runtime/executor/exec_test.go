package executor_test

import (
	"errors"
	"strings"
	"syscall"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// execIn runs args in c (docker exec) with its output captured.
func execIn(t *testing.T, c *ctr, args []string, stdin string) (executor.Process, *safeBuffer) {
	t.Helper()
	proc, err := executor.DefaultProcess(args, executor.SpecOpts{})
	if err != nil {
		t.Fatal(err)
	}
	out := &safeBuffer{}
	stdio := executor.Stdio{Stdout: out, Stderr: out}
	if stdin != "" {
		stdio.Stdin = strings.NewReader(stdin)
	}
	p, err := c.Exec(testContext(t), proc, stdio)
	if err != nil {
		t.Fatal(err)
	}
	return p, out
}

// TestExec runs processes in a running container: they share its pid
// namespace (and see its init), report their own exit codes, take stdin,
// die by signals like any non-init process, and die with the container.
func TestExec(t *testing.T) {
	e := newEnv(t)
	c, _, _ := e.sleeper(t)
	ctx := testContext(t)

	p, out := execIn(t, c, []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; read x; echo got $x; exit 4"}, "abc\n")
	exit, err := p.Wait(ctx)
	if err != nil || exit.Code != 4 || out.String() != "sleep 100 \ngot abc\n" {
		t.Errorf("exec: exit %+v, %v, output %q; want 4 and the container's init and stdin in the output", exit, err, out.String())
	}
	if p.Pid() <= 0 {
		t.Errorf("pid = %d", p.Pid())
	}

	// Not the namespace's init, so SIGTERM kills it: 128+15.
	p, _ = execIn(t, c, []string{"sleep", "100"}, "")
	if err := p.Kill(ctx, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exit, err := p.Wait(ctx); err != nil || exit.Code != 143 || exit.Signal != syscall.SIGTERM {
		t.Errorf("exec killed by SIGTERM: %+v, %v; want 143", exit, err)
	}
	if err := p.Resize(ctx, 80, 25); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("resize without a terminal: %v, want ErrFailedPrecondition", err)
	}

	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	proc, _ := executor.DefaultProcess([]string{"true"}, executor.SpecOpts{})
	if _, err := c.Exec(ctx, proc, executor.Stdio{}); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("exec in a paused container: %v, want ErrFailedPrecondition", err)
	}
	if err := c.Resume(ctx); err != nil {
		t.Fatal(err)
	}

	p, _ = execIn(t, c, []string{"sleep", "100"}, "")
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if exit, err := p.Wait(ctx); err != nil || exit.Signal != syscall.SIGKILL {
		t.Errorf("exec when its container was deleted: %+v, %v; want a SIGKILL death", exit, err)
	}
	if _, err := c.Exec(ctx, proc, executor.Stdio{}); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("exec in a deleted container: %v, want ErrFailedPrecondition", err)
	}
}

// TestExecTerminal runs docker exec -t: the process gets its own terminal.
func TestExecTerminal(t *testing.T) {
	e := newEnv(t)
	c, _, _ := e.sleeper(t)
	ctx := testContext(t)
	proc, err := executor.DefaultProcess([]string{"sh", "-c", "test -t 0 && test -t 1 && echo isatty $TERM"}, executor.SpecOpts{Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Exec(ctx, proc, executor.Stdio{Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.Console() == nil {
		t.Fatal("no console")
	}
	defer p.Console().Close()
	output := readConsole(p.Console())
	if exit, err := p.Wait(ctx); err != nil || exit.Code != 0 {
		t.Fatalf("exit = %+v, %v", exit, err)
	}
	if got := awaitConsole(t, output); got != "isatty xterm\n" {
		t.Errorf("console output %q, want isatty xterm", got)
	}
}
