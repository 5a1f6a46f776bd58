// Package command is layerlab's one helper for running external tools
// (mkfs, dmsetup, zfs, ...): it turns a failure into an error that names
// the command and carries its stderr.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
)

// ErrMissing is wrapped when the tool is not installed.
var ErrMissing = errors.New("tool not installed")

// Error is a command that ran and failed.
type Error struct {
	Cmd    string
	Code   int
	Stderr string
	Err    error
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("%s: exit %d: %s", e.Cmd, e.Code, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Run runs name with args and returns its stdout.
func Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (run `make setup`)", name, ErrMissing)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		return stdout.Bytes(), &Error{Cmd: name + " " + strings.Join(args, " "), Code: code, Stderr: stderr.String(), Err: err}
	}
	return stdout.Bytes(), nil
}

// Available reports whether name is on PATH.
func Available(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// Background starts name with args and returns without waiting for it to
// end: for daemons (zfs-fuse). It runs in a session of its own, so a
// Ctrl-C to the caller does not reach it, with / as its working directory,
// so it pins no directory of the caller, and with its output discarded.
// exited receives its exit status when it ends: it stays a child of the
// caller, which reaps it then instead of leaving a defunct entry until
// init gets to it.
func Background(name string, args ...string) (pid int, exited <-chan error, err error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w (run `make setup`)", name, ErrMissing)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd.Process.Pid, done, nil
}
