package executor_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// TestExitCodes runs real commands in busybox containers and checks the
// exit code Wait reports, 128+signal for a signal death.
func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		sig  syscall.Signal
	}{
		{"true", []string{"true"}, 0, 0},
		{"false", []string{"false"}, 1, 0},
		{"exit7", []string{"sh", "-c", "exit 7"}, 7, 0},
		// The shell is the pid namespace's init, which the kernel
		// shields from signals sent inside the namespace, even
		// SIGKILL; a child shell that kills itself dies as usual and
		// the init reports its status, as a shell does.
		{"selfkill", []string{"sh", "-c", `sh -c 'kill -9 $$'; exit $?`}, 137, 0},
		{"selfkill-init", []string{"sh", "-c", `kill -9 $$; exit 5`}, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, exit := e.run(t, tc.args, executor.SpecOpts{}, nil)
			if exit.Code != tc.code || exit.Signal != tc.sig {
				t.Fatalf("exit = %+v, want code %d signal %d (stderr %q)", exit, tc.code, tc.sig, c.stderr.String())
			}
		})
	}
}

// TestStdio checks that stdout and stderr are captured apart and stdin
// reaches the container.
func TestStdio(t *testing.T) {
	e := newEnv(t)
	c, exit := e.run(t, []string{"echo", "hi"}, executor.SpecOpts{}, nil)
	if exit.Code != 0 || c.stdout.String() != "hi\n" || c.stderr.String() != "" {
		t.Fatalf("echo hi: exit %+v, stdout %q, stderr %q", exit, c.stdout.String(), c.stderr.String())
	}
	c, exit = e.run(t, []string{"sh", "-c", "echo out; echo err >&2"}, executor.SpecOpts{}, nil)
	if exit.Code != 0 || c.stdout.String() != "out\n" || c.stderr.String() != "err\n" {
		t.Fatalf("split streams: exit %+v, stdout %q, stderr %q", exit, c.stdout.String(), c.stderr.String())
	}
	c, exit = e.run(t, []string{"cat"}, executor.SpecOpts{}, strings.NewReader("from stdin\n"))
	if exit.Code != 0 || c.stdout.String() != "from stdin\n" {
		t.Fatalf("cat: exit %+v, stdout %q, stderr %q", exit, c.stdout.String(), c.stderr.String())
	}
	// A stdin that never ends (an attached client that stays) must not
	// hold up Wait once the container has exited.
	pr, pw := io.Pipe()
	defer pw.Close()
	if c, exit = e.run(t, []string{"echo", "done"}, executor.SpecOpts{}, pr); exit.Code != 0 || c.stdout.String() != "done\n" {
		t.Fatalf("endless stdin: exit %+v, stdout %q", exit, c.stdout.String())
	}
}

// TestIsolation checks what DefaultSpec promises inside the container:
// hostname, root user, its own pid namespace, and network none (only lo)
// against host (the host's interfaces).
func TestIsolation(t *testing.T) {
	e := newEnv(t)
	check := func(args []string, o executor.SpecOpts, want string) {
		t.Helper()
		c, exit := e.run(t, args, o, nil)
		if exit.Code != 0 || c.stdout.String() != want {
			t.Errorf("%v: exit %+v, stdout %q, want %q (stderr %q)", args, exit, c.stdout.String(), want, c.stderr.String())
		}
	}
	check([]string{"hostname"}, executor.SpecOpts{Hostname: "box1"}, "box1\n")
	check([]string{"id", "-u"}, executor.SpecOpts{}, "0\n")
	check([]string{"sh", "-c", "echo $$"}, executor.SpecOpts{}, "1\n")
	check([]string{"sh", "-c", "echo $PATH"}, executor.SpecOpts{}, strings.TrimPrefix(executor.DefaultPath, "PATH=")+"\n")
	check([]string{"sh", "-c", "pwd"}, executor.SpecOpts{Cwd: "/tmp"}, "/tmp\n")
	// no-new-privileges is set on the process (NoNewPrivs: 1).
	check([]string{"sh", "-c", "grep NoNewPrivs /proc/self/status | tr -d '\\t '"}, executor.SpecOpts{}, "NoNewPrivs:1\n")
	// Docker's default seccomp profile is on where the build can filter
	// (make builds with the seccomp tag): mode 2, one filter.
	wantSeccomp := "Seccomp:0\n"
	if executor.SeccompFilters {
		wantSeccomp = "Seccomp:2\n"
	}
	check([]string{"sh", "-c", "grep '^Seccomp:' /proc/self/status | tr -d '\\t '"}, executor.SpecOpts{}, wantSeccomp)
	// Docker's default capabilities, as the mask `docker run busybox`
	// shows, in the bounding and effective sets.
	check([]string{"sh", "-c", "grep -E 'CapBnd|CapEff' /proc/self/status | tr -d '\\t '"}, executor.SpecOpts{}, "CapEff:00000000a80425fb\nCapBnd:00000000a80425fb\n")
	// A masked path reads empty, a read-only one refuses writes.
	check([]string{"sh", "-c", "cat /proc/kcore | wc -c"}, executor.SpecOpts{}, "0\n")
	check([]string{"sh", "-c", "echo x 2>/dev/null >/proc/sys/kernel/domainname || echo refused"}, executor.SpecOpts{}, "refused\n")

	c, exit := e.run(t, []string{"cat", "/proc/net/dev"}, executor.SpecOpts{Network: executor.NetworkNone}, nil)
	if got := interfaces(c.stdout.String()); exit.Code != 0 || strings.Join(got, ",") != "lo" {
		t.Errorf("network none: exit %+v, interfaces %v, want only lo", exit, got)
	}
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	c, exit = e.run(t, []string{"cat", "/proc/net/dev"}, executor.SpecOpts{Network: executor.NetworkHost}, nil)
	if got, want := interfaces(c.stdout.String()), interfaces(string(host)); exit.Code != 0 || strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("network host: exit %+v, interfaces %v, want the host's %v", exit, got, want)
	}
}

// interfaces returns the interface names /proc/net/dev lists.
func interfaces(procNetDev string) []string {
	var names []string
	for _, line := range strings.Split(procNetDev, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return names
}

// TestKillAndDelete stops long-running containers from outside and checks
// that Delete leaves no cgroup, state directory, mount or process behind.
func TestKillAndDelete(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		args  []string
		procs int // how many processes run once it is ready for the signal
		sig   syscall.Signal
		exit  executor.Exit
	}{
		// A pid namespace's init gets SIGKILL from outside always...
		{"sigkill", []string{"sleep", "100"}, 1, syscall.SIGKILL, executor.Exit{Code: 137, Signal: syscall.SIGKILL}},
		// ...and other signals only when it handles them, as Docker's
		// `docker stop` relies on; a shell that traps TERM exits 143.
		{"sigterm", []string{"sh", "-c", `trap 'exit 143' TERM; sleep 100 & wait`}, 2, syscall.SIGTERM, executor.Exit{Code: 143}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := mountNamespace(t)
			c := e.start(t, tc.args)
			ctx := testContext(t)
			pids := waitPids(t, c, tc.procs)
			cgroups := cgroupDirs(t, c.ID())
			for _, dir := range cgroups {
				if _, err := os.Stat(dir); err != nil {
					t.Fatalf("running container's cgroup: %v", err)
				}
			}
			if err := c.Kill(ctx, tc.sig); err != nil {
				t.Fatal(err)
			}
			exit, err := c.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if exit.Code != tc.exit.Code || exit.Signal != tc.exit.Signal {
				t.Errorf("exit = %+v, want %+v", exit, tc.exit)
			}
			if err := c.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			e.assertGone(t, c, cgroups, pids)
			// The rootfs is the test's and still mounted; nothing else.
			rootfs := filepath.Join(e.mnts, c.ID())
			if got := mountsOf(t, c.ID(), e.root); !slices.Equal(got, []string{rootfs}) {
				t.Errorf("mounts left: %v, want only the test's rootfs %s", got, rootfs)
			}
			// No thread of ours (the main one /proc/self shows) was
			// left in the container's mount namespace, keeping it alive.
			if got := mountNamespace(t); got != ns {
				t.Errorf("the process's mount namespace is %s, was %s", got, ns)
			}
			if err := c.Delete(ctx); err != nil {
				t.Errorf("second delete: %v", err)
			}
		})
	}
}

// TestDeleteRunning deletes a container that still runs: Delete kills it.
func TestDeleteRunning(t *testing.T) {
	e := newEnv(t)
	c, pids, cgroups := e.sleeper(t)
	ctx := testContext(t)
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	e.assertGone(t, c, cgroups, pids)
	if exit, err := c.Wait(ctx); err != nil || exit.Signal != syscall.SIGKILL {
		t.Errorf("wait after delete: %+v, %v; want a SIGKILL death", exit, err)
	}
	if err := c.Kill(ctx, syscall.SIGTERM); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("kill after delete: %v, want ErrFailedPrecondition", err)
	}
}

// TestWaitBeforeStart checks that Wait may start before Start (docker run
// -d waits for next-exit first) and that a container never started can be
// deleted.
func TestWaitBeforeStart(t *testing.T) {
	e := newEnv(t)
	c := e.create(t, []string{"sh", "-c", "exit 3"}, executor.SpecOpts{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := c.Status(ctx); err != nil || st != executor.Created {
		t.Fatalf("status = %q, %v; want created", st, err)
	}
	exited := make(chan executor.Exit, 1)
	go func() {
		exit, err := c.Wait(ctx)
		if err != nil {
			t.Error(err)
		}
		exited <- exit
	}()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if exit := <-exited; exit.Code != 3 {
		t.Errorf("exit = %+v, want 3", exit)
	}

	never := e.create(t, []string{"true"}, executor.SpecOpts{}, nil)
	if err := never.Delete(ctx); err != nil {
		t.Fatalf("delete a created container: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.root, never.ID())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left behind (%v)", err)
	}
}
