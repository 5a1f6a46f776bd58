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
