package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRunKeepsStderrAndCode(t *testing.T) {
	out, err := Run(context.Background(), "sh", "-c", "echo out; echo oops >&2; exit 3")
	var ce *Error
	if !errors.As(err, &ce) || ce.Code != 3 || ce.Stderr != "oops\n" || string(out) != "out\n" {
		t.Fatalf("Run: out %q, err %v; want out, exit 3 and stderr oops", out, err)
	}
	if _, err := Run(context.Background(), "layerlab-no-such-tool"); !errors.Is(err, ErrMissing) {
		t.Fatalf("missing tool: %v, want ErrMissing", err)
	}
}

// TestBackground checks what a daemon started with Background gets: a
// session of its own, / as working directory, and an exit status the
// caller receives (so it is reaped, not left defunct).
func TestBackground(t *testing.T) {
	pid, exited, err := Background("sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("session of %d: %d (%v), want its own", pid, sid, err)
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd"); err != nil || cwd != "/" {
		t.Errorf("working directory %q (%v), want /", cwd, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("exit status %v, want killed by SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit status 10 s after SIGTERM")
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("process %d still listed after its exit was received (not reaped): %v", pid, err)
	}
	if _, _, err := Background("layerlab-no-such-tool"); !errors.Is(err, ErrMissing) {
		t.Errorf("missing tool: %v, want ErrMissing", err)
	}
}
