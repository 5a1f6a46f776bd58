package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cli runs the docker CLI against one layerlabd.
type cli struct {
	t    testing.TB
	sock string
	dir  string
	d    *daemonProc
	// netns, when not 0, runs the CLI in the network namespace of that
	// process (the daemon's, for its tcp listeners) with no -H of its own:
	// the args say where and how to connect.
	netns int
}

// run returns the CLI's combined output and its exit code.
func (c cli) run(args ...string) (string, int) { return c.runIn("", args...) }

// runIn is run with stdin as the CLI's standard input.
func (c cli) runIn(stdin string, args ...string) (string, int) {
	cmd := exec.Command(dockerCLI, append([]string{"-H", "unix://" + c.sock}, args...)...)
	if c.netns != 0 {
		cmd = inNetns(c.netns, dockerCLI, args...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	// DOCKER_CERT_PATH has no certificates: a TLS client presents one
	// only when its args name it.
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(c.dir, "docker-config"), "DOCKER_CERT_PATH="+filepath.Join(c.dir, "no-certs"),
		"DOCKER_HOST=", "DOCKER_CONTEXT=", "DOCKER_TLS_VERIFY=")
	cmd.Dir = c.dir
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		c.t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// expect runs the CLI and fails the test unless it exits with code and
// its output contains want.
func (c cli) expect(code int, want string, args ...string) string {
	c.t.Helper()
	out, got := c.run(args...)
	if got != code || !strings.Contains(out, want) {
		c.t.Fatalf("docker %s: exit %d, want %d with %q in:\n%s\nlayerlabd log:\n%s", strings.Join(args, " "), got, code, want, out, c.d.logText())
	}
	c.t.Logf("docker %s: exit %d:\n%s", strings.Join(args, " "), got, out)
	return out
}

// TestEndToEndContainers runs containers through the real docker CLI:
// run --rm, exit codes, run -d + ps + logs + stop + ps -a + inspect + rm,
// a per-container storage driver, the refusals (rm of a running
// container, an unknown image, a duplicate name), and a SIGTERM of the
// daemon with a container running that leaves no mount, cgroup or
// process behind.
func TestEndToEndContainers(t *testing.T) {
	// Registered before the daemon's, so it runs after it: whatever a
	// failed test left in a container cgroup is killed and the cgroups
	// removed.
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	d, dataRoot := e.d, e.dataRoot
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: d}

	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	c.expect(0, "hello", "run", "--rm", "busybox", "echo", "hello")
	if out := c.expect(0, "", "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("run --rm left a container: %s", out)
	}
	if out, code := c.runIn("from stdin\n", "run", "-i", "--rm", "busybox", "cat"); code != 0 || out != "from stdin\n" {
		t.Fatalf("docker run -i --rm busybox cat: exit %d, %q; want the input back", code, out)
	}
	// USER by name from the image's /etc/passwd, with its HOME.
	c.expect(0, "uid=65534(nobody) gid=65534(nogroup)\n/home\n", "run", "--rm", "--user", "nobody", "busybox", "sh", "-c", "id; echo $HOME")
	// A command that is not there: the CLI's 127, and --rm still removes.
	c.expect(127, "executable file not found", "run", "--rm", "busybox", "nosuch")
	if out := c.expect(0, "", "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("a failed run --rm left a container: %s", out)
	}
	// With a TTY the output is raw, through the terminal (CR LF).
	c.expect(0, "tty\r\n", "run", "--rm", "-t", "busybox", "echo", "tty")
	c.expect(3, "", "run", "--name", "three", "busybox", "sh", "-c", "exit 3")
	c.expect(0, "", "rm", "three")

	c.expect(0, "", "run", "-d", "--name", "web", "busybox", "sh", "-c", "echo started; echo oops >&2; exec sleep 300")
	c.expect(0, "web", "ps")
	c.expect(0, "Running: 1", "info")
	waitLogs := time.Now().Add(10 * time.Second)
	for out, _ := c.run("logs", "web"); !strings.Contains(out, "started") || !strings.Contains(out, "oops"); out, _ = c.run("logs", "web") {
		if time.Now().After(waitLogs) {
			t.Fatalf("docker logs web: %q, want started and oops", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// stdout and stderr are read apart, so either may be logged last.
	if out := c.expect(0, "", "logs", "--tail", "1", "web"); out != "started\n" && out != "oops\n" {
		t.Fatalf("logs --tail 1: %q, want one line", out)
	}
	// busybox sleep as pid 1 ignores SIGTERM: the SIGKILL after 1 s ends it.
	start := time.Now()
	c.expect(0, "web", "stop", "-t", "1", "web")
	if took := time.Since(start); took < time.Second || took > 10*time.Second {
		t.Errorf("stop -t 1 took %v", took)
	}
	if out := c.expect(0, "Exited (137)", "ps", "-a"); !strings.Contains(out, "web") {
		t.Fatalf("ps -a: %s", out)
	}
	var insp []struct {
		State struct {
			Status, Error string
			ExitCode      int
		}
		GraphDriver struct{ Name string }
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "web")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect web: %v %+v", err, insp)
	}
	if s := insp[0]; s.State.Status != "exited" || s.State.ExitCode != 137 || s.GraphDriver.Name != "overlay2" {
		t.Fatalf("inspect web: %+v, want exited 137 on overlay2", s)
	}
	c.expect(0, "started", "logs", "web")
	c.expect(0, "web", "rm", "web")
	c.expect(1, "No such container: web", "rm", "web")

	// logs -f follows a running container to its end; -t stamps lines.
	c.expect(0, "", "run", "-d", "--name", "follow", "busybox", "sh", "-c", "echo one; sleep 1; echo two")
	if out := c.expect(0, "one\ntwo\n", "logs", "-f", "follow"); out != "one\ntwo\n" {
		t.Fatalf("logs -f: %q", out)
	}
	if out := c.expect(0, "Z one\n", "logs", "-t", "follow"); !strings.HasPrefix(out, "20") {
		t.Fatalf("logs -t: %q", out)
	}
	// kill, wait, and a second start of the same container.
	c.expect(0, "follow", "start", "follow")
	c.expect(0, "0\n", "wait", "follow")
	c.expect(0, "", "run", "-d", "--name", "killed", "busybox", "sleep", "300")
	c.expect(0, "killed", "kill", "killed")
	c.expect(0, "137\n", "wait", "killed")
	c.expect(1, "is not running", "kill", "killed")
	c.expect(0, "", "rm", "follow", "killed")

	if out := c.expect(0, " / overlay ", "run", "--rm", "busybox", "cat", "/proc/mounts"); strings.Contains(out, " / ext4 ") {
		t.Fatalf("overlay2 rootfs: %s", out)
	}
	c.expect(0, " / ext4 ", "run", "--rm", "--storage-opt", "driver=vfs", "busybox", "cat", "/proc/mounts")
	c.expect(125, "not enabled (enabled: vfs, overlay2)", "run", "--rm", "--storage-opt", "driver=btrfs", "busybox", "true")

	c.expect(0, "", "run", "-d", "--name", "busy", "busybox", "sleep", "300")
	c.expect(1, "stop the container before removing or force remove", "rm", "busy")
	c.expect(0, "busy", "rm", "-f", "busy")
	// Not here: the CLI pulls it from Docker Hub, which the daemon's
	// namespace cannot reach; the daemon says so at once.
	c.expect(125, "index.docker.io cannot be reached", "run", "--rm", "nosuch")
	c.expect(0, "", "create", "--name", "dup", "busybox", "true")
	c.expect(1, `The container name "/dup" is already in use`, "create", "--name", "dup", "busybox", "true")
	c.expect(1, "image is being used by a container", "rmi", "busybox")
	c.expect(0, "dup", "rm", "dup")

	// Nothing mounted for containers that are gone.
	checkNoContainerMounts(t, d.cmd.Process.Pid, dataRoot)

	// A daemon killed with a container running: the next one purges it
	// and reports it exited.
	c.expect(0, "", "run", "-d", "--name", "crashed", "busybox", "sleep", "300")
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	e.start(t, "layerlabd-2.log")
	d = e.d
	c.d = d
	insp = nil
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "crashed")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect crashed: %v %+v", err, insp)
	}
	if s := insp[0].State; s.Status != "exited" || !strings.Contains(s.Error, "layerlabd stopped while the container ran") {
		t.Fatalf("after a restart the running container is %+v, want exited with State.Error saying the daemon stopped", s)
	}
	checkNoLeftovers(t)
	c.expect(0, "crashed", "rm", "crashed")

	// A SIGTERM with a container running cleans that one up too.
	c.expect(0, "", "run", "-d", "--name", "left", "busybox", "sleep", "300")
	d.terminate(t)
	checkNoContainerMounts(t, os.Getpid(), dataRoot)
	checkNoLeftovers(t)
	// The parent cgroup too: the cgroup trees are as before the daemon.
	if parents, _ := filepath.Glob("/sys/fs/cgroup/*/layerlab"); len(parents) > 0 {
		t.Errorf("the stopped daemon left its parent cgroup in %d hierarchies: %v", len(parents), parents)
	}
}

// checkNoContainerMounts fails the test if pid's mount namespace has a
// container's rootfs mounted under dataRoot.
func checkNoContainerMounts(t *testing.T, pid int, dataRoot string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "mounts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], filepath.Join(dataRoot, "containers")) {
			t.Errorf("mount left behind: %s", line)
		}
	}
}

// leftovers returns the container cgroups left under /layerlab in the v1
// hierarchies and the pids of the processes in one.
func leftovers() (cgroups []string, pids []int) {
	hier, _ := filepath.Glob("/sys/fs/cgroup/*/layerlab/*")
	for _, h := range hier {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			cgroups = append(cgroups, h)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			// A process in a cgroup already deleted is on its way out.
			if strings.Contains(line, ":/layerlab/") && !strings.HasSuffix(line, "(deleted)") {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids = append(pids, pid)
				break
			}
		}
	}
	return cgroups, pids
}

// checkNoLeftovers fails the test if a container cgroup or process is
// still there a few seconds after the daemon cleaned up.
func checkNoLeftovers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		cgroups, pids := leftovers()
		if len(cgroups) == 0 && len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: cgroups %v, processes %v", cgroups, pids)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killLeftovers kills the processes a failed test left in container
// cgroups (only containers of this test's daemons live under /layerlab)
// and removes those cgroups.
func killLeftovers(t testing.TB) {
	cgroups, pids := leftovers()
	for _, pid := range pids {
		t.Logf("killing leftover container process %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(100 * time.Millisecond)
	for _, cg := range cgroups {
		t.Logf("removing leftover cgroup %s", cg)
		_ = os.Remove(cg)
	}
	parents, _ := filepath.Glob("/sys/fs/cgroup/*/layerlab")
	for _, p := range parents {
		_ = os.Remove(p) // fails while another container is in it; fine
	}
}
