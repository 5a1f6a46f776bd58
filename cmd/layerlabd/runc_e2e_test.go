package main

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestEndToEndRuncRuntime runs layerlabd with --runtime runc (Debian's
// runc binary instead of libcontainer in process) and drives the
// container lifecycle through the docker CLI: exit codes, stdin, a TTY,
// exec, top, pause, logs, stop; then a SIGKILL of the daemon with a
// container running, whose restart purges it through runc.
func TestEndToEndRuncRuntime(t *testing.T) {
	e, c := startRuncDaemon(t)

	c.expect(0, "hello\n", "run", "--rm", "busybox", "echo", "hello")
	c.expect(3, "", "run", "--rm", "busybox", "sh", "-c", "exit 3")
	if out, code := c.runIn("through runc\n", "run", "-i", "--rm", "busybox", "cat"); code != 0 || out != "through runc\n" {
		t.Errorf("docker run -i --rm busybox cat: exit %d, %q", code, out)
	}
	c.expect(0, "a tty\r\n", "run", "--rm", "-t", "busybox", "sh", "-c", "test -t 1 && echo a tty")

	c.expect(0, "", "run", "-d", "--name", "sl", "busybox", "sh", "-c", "echo up; exec sleep 1000")
	c.expect(0, "hi\n", "exec", "sl", "echo", "hi")
	c.expect(4, "", "exec", "sl", "sh", "-c", "exit 4")
	c.expect(0, "uid=65534", "exec", "-u", "nobody", "sl", "id")
	c.expect(0, "sleep 1000", "top", "sl")
	c.expect(0, "sl", "pause", "sl")
	c.expect(0, "(Paused)", "ps", "--filter", "name=sl")
	c.expect(0, "sl", "unpause", "sl")
	eventually(t, time.Minute, "sl's first line in its logs", func() bool { out, _ := c.run("logs", "sl"); return out == "up\n" })
	c.expect(0, "sl", "stop", "-t", "1", "sl")
	c.expect(0, "Exited (137)", "ps", "-a", "--filter", "name=sl")
	c.expect(0, "sl", "rm", "sl")

	// A daemon killed with a container running: the next one purges it.
	c.expect(0, "", "run", "-d", "--name", "orphan", "busybox", "sleep", "1000")
	pid := containerPid(t, c, "orphan")
	if err := e.d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.d.exited
	e.start(t, "layerlabd-2.log")
	c.d = e.d
	if out := c.expect(0, "", "inspect", "-f", "{{.State.Status}} {{.State.Error}}", "orphan"); !strings.HasPrefix(out, "exited layerlabd stopped") {
		t.Errorf("the orphan after the restart: %q", out)
	}
	if processAlive(pid) {
		t.Errorf("the orphan's process %d survived the restart", pid)
	}
	c.expect(0, "orphan", "rm", "orphan")
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// startRuncDaemon starts layerlabd --runtime runc (skipping without
// Debian's runc), with busybox loaded; leftovers are killed at the end.
func startRuncDaemon(t *testing.T) (testEnv, cli) {
	t.Helper()
	if _, err := exec.LookPath("runc"); err != nil {
		feature.Skip(t, feature.Runc, "runc: %v (make setup installs Debian's runc)", err)
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	e.opts = []string{"--runtime", "runc"}
	e.start(t, "layerlabd.log")
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	c.expect(0, "Default Runtime: runc", "info")
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	return e, c
}
