package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEndToEndDaemonKilled kills layerlabd with SIGKILL while a container
// runs, starts it again on the same data root and checks what a user
// would: the images and the stopped container are still there, the
// running one is reported exited with the reason, its process is gone,
// nothing of it stays mounted, and it can be started again; at the end no
// cgroup or process is left.
func TestEndToEndDaemonKilled(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)
	c.expect(3, "finished", "run", "--name", "done", "busybox", "sh", "-c", "echo finished; exit 3")
	c.expect(0, "", "run", "-d", "--name", "runner", "busybox", "sh", "-c", "echo started; exec sleep 1000")
	pid := containerPid(t, c, "runner")
	// Its line must be out before the kill (a loaded machine may not have
	// run the echo yet): the logs are checked after the restart.
	eventually(t, 10*time.Second, "the runner's line in its logs", func() bool {
		out, _ := c.run("logs", "runner")
		return out == "started\n"
	})

	if err := e.d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.d.exited
	e.start(t, "layerlabd-after-kill.log")
	c.d = e.d

	c.expect(0, "busybox", "images")
	out := c.expect(0, "", "ps", "-a", "--format", "{{.Names}} {{.Status}}")
	for _, want := range []string{"done Exited (3)", "runner Exited (255)"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker ps -a after the restart lacks %q:\n%s", want, out)
		}
	}
	var insp []struct {
		State struct {
			Status, Error string
			Running       bool
			Pid           int
		}
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "runner")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect runner: %v", err)
	}
	if st := insp[0].State; st.Status != "exited" || st.Running || !strings.Contains(st.Error, "daemon") {
		t.Errorf("runner after the restart: %+v, want exited with the daemon's restart as the reason", st)
	}
	if processAlive(pid) {
		t.Errorf("the container's process %d survived the restart", pid)
	}
	checkNoContainerMounts(t, e.d.cmd.Process.Pid, e.dataRoot)
	c.expect(0, "finished", "logs", "done")
	c.expect(0, "started", "logs", "runner")

	// The recovered container starts again, and goes with rm -f.
	c.expect(0, "runner", "start", "runner")
	c.expect(0, "runner Up", "ps", "--format", "{{.Names}} {{.Status}}")
	c.expect(0, "runner", "rm", "-f", "runner")
	c.expect(0, "done", "rm", "done")
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// containerPid returns the host pid of a running container's process.
func containerPid(t *testing.T, c cli, name string) int {
	t.Helper()
	out := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.State.Pid}}", name))
	pid, err := strconv.Atoi(out)
	if err != nil || pid <= 0 {
		t.Fatalf("inspect %s: State.Pid %q", name, out)
	}
	return pid
}

// processAlive reports whether pid still runs (a zombie does not count),
// waiting a little for one on its way out.
func processAlive(pid int) bool {
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return false
		}
		// The state is the field after the parenthesised command.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
	}
}
