package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/mount"
)

// With LAYERLAB_TEST_CLI set the test binary is the layerlab command, so
// tests can check what main does: exit codes, and signals.
func TestMain(m *testing.M) {
	if os.Getenv("LAYERLAB_TEST_CLI") != "" {
		main()
		os.Exit(0)
	}
	if spec := os.Getenv(refEnv); spec != "" {
		if err := serveReference(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// cli starts the command with args in a new working directory and a
// TMPDIR of its own (where bench makes its loop filesystems).
func cli(t *testing.T, args ...string) (cmd *exec.Cmd, wd, tmp string, out *bytes.Buffer) {
	t.Helper()
	wd, tmp = t.TempDir(), t.TempDir()
	cmd = exec.Command(os.Args[0], args...)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "LAYERLAB_TEST_CLI=1", "TMPDIR="+tmp)
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, wd, tmp, out
}

func exitCodeOf(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// Bad flags and options exit 2 with the reason, before anything is made:
// no loop filesystem in TMPDIR, no report directory, no panic.
func TestBenchRefusesBadFlagsWithExitCode2(t *testing.T) {
	notEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(notEmpty, "results.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--opt", "overlay2:size=notasize"}, `option size="notasize": want a size such as 10G or 512M: invalid argument`},
		{[]string{"--opt", "overlay2:volatile=maybe"}, `volatile="maybe"`},
		{[]string{"--opt", "vfs:size=1G"}, "takes no options"},
		{[]string{"--opt", "nosuch:x=1"}, `"nosuch"`},
		{[]string{"--opt", "overlay2"}, "want DRIVER:KEY=VALUE"},
		{[]string{"--driver", "vfs", "--opt", "overlay2:volatile=true"}, "does not measure"},
		{[]string{"--driver", "nosuch"}, `"nosuch"`},
		{[]string{"--root", "/nonexistent/layerlab"}, "--root /nonexistent/layerlab"},
		{[]string{"--n", "-5"}, "--n -5"},
		{[]string{"--n", "0"}, "--n 0"},
		{[]string{"--n", "abc"}, `invalid argument "abc" for "--n"`},
		{[]string{"--workloads", "nosuch"}, `workload "nosuch"`},
		{[]string{"--profile", "fast"}, `profile "fast"`},
		{[]string{"--out", notEmpty}, "holds files already"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd, wd, tmp, out := cli(t, append([]string{"bench"}, tc.args...)...)
			err := cmd.Run()
			if code := exitCodeOf(err); code != 2 {
				t.Errorf("exit code %d (%v), want 2; output:\n%s", code, err, out)
			}
			if !strings.Contains(out.String(), tc.want) || strings.Contains(out.String(), "panic") {
				t.Errorf("output lacks %q (or panics):\n%s", tc.want, out)
			}
			for _, dir := range []string{wd, tmp} {
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Errorf("%s holds %d entries after a refusal (first %s)", dir, len(entries), entries[0].Name())
				}
			}
		})
	}
}

// Every registered driver refuses an unknown option with
// ErrInvalidArgument, both without a home and from Open, which hands back
// a nil Driver (a nil pointer inside the interface made bench's teardown
// panic).
func TestEveryDriverRefusesBadOptionsWithANilDriver(t *testing.T) {
	reg := builtin.Registry()
	for _, name := range reg.Names() {
		f, _ := reg.Get(name)
		opts := drivers.Options{"nosuch": "1"}
		if err := reg.CheckOptions(name, opts); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s CheckOptions: %v, want ErrInvalidArgument", name, err)
		}
		d, err := f.Open(context.Background(), filepath.Join(t.TempDir(), "home"), opts)
		if d != nil || !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s Open: %#v, %v; want a nil Driver and ErrInvalidArgument", name, d, err)
		}
	}
}

// SIGINT in the middle of a run: the command tears down what it made,
// writes the report of what it measured marked partial, and exits 130.
func TestBenchSIGINTWritesAPartialReport(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "bench mounts: needs root")
	}
	cmd, wd, tmp, out := cli(t, "bench", "--driver", "vfs", "--workloads", "snapshot-ops,depth", "--n", "50", "--out", "partial")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The event: a snapshot mounted under the harness's work directory,
	// so measuring is under way.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		points, _ := mount.Under(tmp)
		measuring := false
		for _, p := range points {
			measuring = measuring || strings.Contains(p, "layerlab-bench-mnt-vfs")
		}
		if measuring {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("bench ended before it measured: %v\n%s", err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no snapshot mounted within 2 minutes:\n%s", out)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("bench did not stop within 2 minutes of SIGINT:\n%s", out)
	}
	if code := exitCodeOf(err); code != 130 {
		t.Errorf("exit code %d, want 130; output:\n%s", code, out)
	}
	if !strings.Contains(out.String(), "PARTIAL report (interrupted)") {
		t.Errorf("output does not say the report is partial:\n%s", out)
	}
	res, lerr := result.Load(filepath.Join(wd, "partial", "results.json"))
	if lerr != nil {
		t.Fatalf("no partial results: %v\n%s", lerr, out)
	}
	if !res.Partial || len(res.Notes) == 0 || !strings.HasPrefix(res.Notes[0], "PARTIAL RESULTS: stopped (interrupted by SIGINT)") {
		t.Errorf("results partial=%v, notes %q", res.Partial, res.Notes)
	}
	for _, f := range []string{"index.html", "report.md"} {
		if _, err := os.Stat(filepath.Join(wd, "partial", f)); err != nil {
			t.Errorf("partial report lacks %s: %v", f, err)
		}
	}
	if points, err := mount.Under(tmp); err != nil || len(points) > 0 {
		t.Errorf("mounts left under %s: %v %v", tmp, points, err)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("TMPDIR holds %d entries after the run (first %s)", len(entries), entries[0].Name())
	}
}
