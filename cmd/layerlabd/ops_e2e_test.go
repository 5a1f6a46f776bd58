package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiClient talks HTTP to the daemon's socket, for what the CLI does not
// show (exec inspect's fields, the raw refusals).
func apiClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

// call sends a request with a JSON body (nil for none) and decodes the
// JSON answer into out (nil to ignore it); it returns the status.
func call(t *testing.T, client *http.Client, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://layerlabd/v1.41"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, data, err)
		}
	}
	t.Logf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	return resp.StatusCode
}

// eventually polls f every 50 ms until it returns true, failing the test
// with what after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// state returns a container's inspect fields the ops tests look at.
func (c cli) state(name string) (status string, running, paused, restarting bool, restarts, exitCode int) {
	c.t.Helper()
	out, code := c.run("inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.Paused}} {{.State.Restarting}} {{.RestartCount}} {{.State.ExitCode}}", name)
	if code != 0 {
		c.t.Fatalf("inspect %s: exit %d: %s", name, code, out)
	}
	if _, err := fmt.Sscanf(out, "%s %t %t %t %d %d", &status, &running, &paused, &restarting, &restarts, &exitCode); err != nil {
		c.t.Fatalf("inspect %s: %q: %v", name, out, err)
	}
	return
}

// TestEndToEndOps drives exec, top, pause/unpause, rename, resize and
// restart with the real docker CLI, and exec inspect and the refusals
// through the API.
func TestEndToEndOps(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	api := apiClient(e.sock)
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	c.expect(0, "", "run", "-d", "--name", "box", "--env", "FROM=ctr", "busybox", "sleep", "300")

	// exec: output, stdin, user/env/workdir, exit codes, stderr, -d.
	if out := c.expect(0, "hi\n", "exec", "box", "echo", "hi"); out != "hi\n" {
		t.Fatalf("exec echo hi: %q", out)
	}
	if out, code := c.runIn("from stdin\nline 2\n", "exec", "-i", "box", "cat"); code != 0 || out != "from stdin\nline 2\n" {
		t.Fatalf("exec -i cat: exit %d, %q; want the input back", code, out)
	}
	if out := c.expect(0, "", "exec", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "box", "sh", "-c", "id; pwd; echo $A $FROM"); out != "uid=65534(nobody) gid=65534(nogroup)\n/tmp\n1 ctr\n" {
		t.Fatalf("exec -e -w -u: %q", out)
	}
	c.expect(3, "", "exec", "box", "sh", "-c", "exit 3")
	c.expect(0, "out\nerr\n", "exec", "box", "sh", "-c", "echo out; sleep 0.1; echo err >&2")
	c.expect(127, "executable file not found", "exec", "box", "nosuch")
	c.expect(0, "", "exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d")
	eventually(t, 10*time.Second, "exec -d wrote /tmp/d", func() bool {
		out, _ := c.run("exec", "box", "cat", "/tmp/d")
		return out == "detached\n"
	})
	// exec -it needs a terminal on the CLI's side: script gives it one.
	script := exec.Command("script", "-qec", fmt.Sprintf("%s -H unix://%s exec -it box sh -c 'tty; echo $TERM; exit 2'", dockerCLI, e.sock), "/dev/null")
	script.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	// A stdin that stays open until the command ends: script ends the
	// session at its stdin's EOF.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	script.Stdin = stdinR
	out, err := script.CombinedOutput()
	stdinR.Close()
	stdinW.Close()
	if code := script.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "xterm\r\n") {
		t.Fatalf("exec -it through script: exit %d (%v), %q; want 2 and a pts and TERM=xterm\n%s", code, err, out, e.d.logText())
	}
	// Through the terminal: the CLI's size reaches the exec's terminal
	// (polled inside: the CLI resizes once the exec started), and typed
	// input reaches the process.
	script = exec.Command("script", "-qec", fmt.Sprintf("stty rows 22 cols 77; %s -H unix://%s exec -it box sh -c "+
		"'for i in $(seq 100); do [ \"$(stty size)\" = \"22 77\" ] && break; sleep 0.05; done; stty size; read x; echo got $x'", dockerCLI, e.sock), "/dev/null")
	script.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	stdinR, stdinW, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	script.Stdin = stdinR
	var typed bytes.Buffer
	script.Stdout, script.Stderr = &typed, &typed
	if err := script.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	if _, err := stdinW.WriteString("typed\r"); err != nil {
		t.Fatal(err)
	}
	err = script.Wait()
	stdinW.Close()
	if !strings.Contains(typed.String(), "22 77\r\n") || !strings.Contains(typed.String(), "got typed\r\n") {
		t.Fatalf("exec -it with a 22x77 terminal and typed input: %v, %q; want the size and the input back", err, typed.String())
	}

	// Each exec's process is reaped and its pipes, terminal and socket
	// closed: the daemon's open files do not grow with execs.
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", e.d.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	for range 5 {
		c.runIn("x\n", "exec", "-i", "box", "cat")
		c.run("exec", "-t", "box", "true")
		c.run("exec", "-d", "box", "true")
		c.run("exec", "box", "nosuch")
	}
	eventually(t, 5*time.Second, "the daemon's open files back to their count before 20 execs", func() bool {
		return fds() <= before+2
	})
	t.Logf("daemon's open files: %d before the execs, %d after", before, fds())

	// A client that goes away leaves the exec's process running, its
	// output drained: the megabyte after the CLI's death does not kill
	// it with SIGPIPE.
	gone := exec.Command(dockerCLI, "-H", "unix://"+e.sock, "exec", "box", "sh", "-c",
		"while [ ! -e /tmp/go ]; do sleep 0.05; done; yes | head -c 1000000 && echo done > /tmp/gone")
	gone.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	if err := gone.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the exec running", func() bool {
		out, _ := c.run("top", "box")
		return strings.Contains(out, "/tmp/go")
	})
	_ = gone.Process.Kill()
	_ = gone.Wait()
	c.expect(0, "", "exec", "box", "touch", "/tmp/go")
	eventually(t, 10*time.Second, "the exec whose client died finished its work", func() bool {
		out, _ := c.run("exec", "box", "cat", "/tmp/gone")
		return out == "done\n"
	})

	// exec inspect: null exit code before the end, then the code, pid
	// and command; a second start is refused.
	var created struct {
		ID string `json:"Id"`
	}
	if st := call(t, api, "POST", "/containers/box/exec", map[string]any{"Cmd": []string{"sh", "-c", "sleep 0.3; exit 5"}, "User": "nobody"}, &created); st != 201 || len(created.ID) != 64 {
		t.Fatalf("exec create: %d %+v", st, created)
	}
	type inspectExec struct {
		ID, ContainerID string
		Running         bool
		ExitCode        *int
		Pid             int
		ProcessConfig   struct {
			Entrypoint string   `json:"entrypoint"`
			Arguments  []string `json:"arguments"`
			User       string   `json:"user"`
			Privileged *bool    `json:"privileged"`
		}
	}
	var ie inspectExec
	if st := call(t, api, "GET", "/exec/"+created.ID+"/json", nil, &ie); st != 200 || ie.Running || ie.ExitCode != nil || ie.ProcessConfig.Entrypoint != "sh" || ie.ProcessConfig.User != "nobody" || ie.ProcessConfig.Privileged == nil {
		t.Fatalf("exec inspect before start: %d %+v", st, ie)
	}
	if st := call(t, api, "POST", "/exec/"+created.ID+"/start", map[string]any{"Detach": true}, nil); st != 200 {
		t.Fatalf("exec start -d: %d", st)
	}
	call(t, api, "GET", "/exec/"+created.ID+"/json", nil, &ie)
	if !ie.Running || ie.Pid <= 0 || len(ie.ContainerID) != 64 {
		t.Fatalf("exec inspect while it runs: %+v", ie)
	}
	eventually(t, 10*time.Second, "the exec's exit code 5 in its inspect", func() bool {
		ie = inspectExec{}
		call(t, api, "GET", "/exec/"+created.ID+"/json", nil, &ie)
		return !ie.Running && ie.ExitCode != nil && *ie.ExitCode == 5
	})
	if st := call(t, api, "POST", "/exec/"+created.ID+"/start", map[string]any{"Detach": true}, nil); st != 409 {
		t.Fatalf("second start of an exec: %d, want 409", st)
	}
	if st := call(t, api, "GET", "/exec/nosuch/json", nil, nil); st != 404 {
		t.Fatalf("inspect of an unknown exec: %d, want 404", st)
	}
	if st := call(t, api, "POST", "/containers/box/exec", map[string]any{"Cmd": []string{}}, nil); st != 400 {
		t.Fatalf("exec without a command: %d, want 400", st)
	}

	// top: ps -ef's rows for the container's processes; other ps args.
	top := c.expect(0, "sleep 300", "top", "box")
	if lines := strings.Split(strings.TrimSpace(top), "\n"); len(lines) != 2 || !strings.Contains(lines[0], "PID") {
		t.Fatalf("top box: want a title line and one process:\n%s", top)
	}
	c.expect(0, "COMMAND", "top", "box", "-o", "pid,comm")

	// pause: frozen, shown so, refused twice, no exec; unpause.
	c.expect(0, "box", "pause", "box")
	if st, running, paused, _, _, _ := c.state("box"); st != "paused" || !running || !paused {
		t.Fatalf("paused box: %s running=%v paused=%v", st, running, paused)
	}
	c.expect(0, "(Paused)", "ps")
	c.expect(0, "sleep 300", "top", "box")
	c.expect(1, "is already paused", "pause", "box")
	c.expect(1, "is paused, unpause the container before exec", "exec", "box", "true")
	c.expect(0, "box", "unpause", "box")
	c.expect(1, "is not paused", "unpause", "box")
	c.expect(0, "back\n", "exec", "box", "echo", "back")
	// stop and kill of a paused container.
	c.expect(0, "box", "pause", "box")
	c.expect(0, "box", "stop", "-t", "1", "box")
	if st, _, paused, _, _, code := c.state("box"); st != "exited" || paused || code != 137 {
		t.Fatalf("stopped paused box: %s paused=%v exit %d", st, paused, code)
	}
	c.expect(1, "is not running", "pause", "box")
	c.expect(1, "is not running", "top", "box")
	c.expect(1, "is not running", "exec", "box", "true")
	c.expect(0, "", "run", "-d", "--name", "frozen", "busybox", "sleep", "300")
	c.expect(0, "frozen", "pause", "frozen")
	c.expect(0, "frozen", "kill", "frozen")
	c.expect(0, "137\n", "wait", "frozen")

	// rename, running and stopped; a name in use, an invalid one.
	c.expect(0, "", "rename", "box", "box2")
	c.expect(1, "No such object: box", "inspect", "box")
	c.expect(0, "", "start", "frozen")
	c.expect(0, "", "rename", "frozen", "thawed")
	c.expect(0, "thawed", "ps")
	c.expect(1, "is already in use", "rename", "box2", "thawed")
	c.expect(1, "Invalid container name", "rename", "box2", "bad name!")

	// restart: a new run of the same container.
	c.expect(0, "", "run", "-d", "--name", "again", "busybox", "sh", "-c", "echo run; exec sleep 300")
	// The first run's line must be out before the restart kills it (a
	// loaded machine may not have run the echo yet).
	eventually(t, 10*time.Second, "the first run's line in the logs", func() bool {
		out, _ := c.run("logs", "again")
		return out == "run\n"
	})
	c.expect(0, "again", "restart", "-t", "0", "again")
	eventually(t, 10*time.Second, "two runs in the logs of the restarted container", func() bool {
		out, _ := c.run("logs", "again")
		return out == "run\nrun\n"
	})
	if st, running, _, _, _, _ := c.state("again"); st != "running" || !running {
		t.Fatalf("restarted container: %s", st)
	}

	// resize: the container's terminal takes the size.
	c.expect(0, "", "run", "-d", "-t", "--name", "tty", "busybox", "sleep", "300")
	if st := call(t, api, "POST", "/containers/tty/resize?h=31&w=101", nil, nil); st != 200 {
		t.Fatalf("resize: %d", st)
	}
	c.expect(0, "31 101", "exec", "tty", "stty", "-F", "/dev/console", "size")
	if st := call(t, api, "POST", "/containers/tty/resize?h=x&w=1", nil, nil); st != 400 {
		t.Fatalf("resize h=x: %d, want 400", st)
	}
	if st := call(t, api, "POST", "/containers/box2/resize?h=1&w=1", nil, nil); st != 409 {
		t.Fatalf("resize of a stopped container: %d, want 409", st)
	}

	// The containers' execs end with them: stop with one running.
	c.expect(0, "", "exec", "-d", "thawed", "sleep", "300")
	c.expect(0, "", "rm", "-f", "box2", "thawed", "again", "tty")
	checkNoContainerMounts(t, e.d.cmd.Process.Pid, e.dataRoot)
	checkNoLeftovers(t)
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// TestEndToEndRestartPolicies runs containers with restart policies:
// on-failure's count, no restart after exit 0 or a user's stop, always
// and its backoff shown as Restarting, a forced removal while
// restarting, the refusals, and a daemon restart that starts the always
// containers again and leaves the unless-stopped one a user stopped.
func TestEndToEndRestartPolicies(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	api := apiClient(e.sock)
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)

	c.expect(0, "", "run", "-d", "--name", "fail2", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 1")
	c.expect(0, "", "run", "-d", "--name", "ok", "--restart", "on-failure", "busybox", "true")
	eventually(t, 20*time.Second, "on-failure:2 ends exited after 2 restarts", func() bool {
		st, _, _, _, n, code := c.state("fail2")
		return st == "exited" && n == 2 && code == 1
	})
	time.Sleep(time.Second) // a third restart would have come by now
	if st, _, _, _, n, _ := c.state("fail2"); st != "exited" || n != 2 {
		t.Fatalf("on-failure:2 went on: %s after %d restarts", st, n)
	}
	if st, _, _, _, n, _ := c.state("ok"); st != "exited" || n != 0 {
		t.Fatalf("on-failure after exit 0: %s with %d restarts, want exited with none", st, n)
	}

	c.expect(0, "", "run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", "sleep 0.2; exit 0")
	eventually(t, 20*time.Second, "always restarts and shows Restarting in ps while it waits", func() bool {
		out, _ := c.run("ps", "--filter", "name=always")
		return strings.Contains(out, "Restarting (0)")
	})
	if _, running, _, restarting, n, _ := c.state("always"); n < 1 || (!running && !restarting) {
		t.Fatalf("always: %d restarts, running=%v restarting=%v", n, running, restarting)
	}
	c.expect(0, "always", "stop", "always")
	st, _, _, _, n, _ := c.state("always")
	time.Sleep(time.Second)
	if st2, _, _, _, n2, _ := c.state("always"); st != "exited" || st2 != "exited" || n2 != n {
		t.Fatalf("always after docker stop: %s then %s, restarts %d then %d; want it to stay exited", st, st2, n, n2)
	}

	// Removal while a restart is pending: refused, then forced.
	c.expect(0, "", "run", "-d", "--name", "loop", "--restart", "always", "busybox", "false")
	eventually(t, 20*time.Second, "a restarting container", func() bool {
		_, _, _, restarting, _, _ := c.state("loop")
		return restarting
	})
	c.expect(1, "stop the container before removing or force remove", "rm", "loop")
	// A stop while the restart waits ends it there.
	c.expect(0, "loop", "stop", "loop")
	st, _, _, _, n, _ = c.state("loop")
	time.Sleep(500 * time.Millisecond)
	if st2, _, _, _, n2, _ := c.state("loop"); st != "exited" || st2 != "exited" || n2 != n {
		t.Fatalf("loop stopped while restarting: %s then %s, restarts %d then %d", st, st2, n, n2)
	}
	c.expect(0, "loop", "start", "loop")
	eventually(t, 20*time.Second, "a restarting container again", func() bool {
		_, _, _, restarting, _, _ := c.state("loop")
		return restarting
	})
	// A restarting container counts as running for wait: it returns at
	// the next exit.
	c.expect(0, "1\n", "wait", "loop")
	c.expect(0, "loop", "rm", "-f", "loop")
	c.expect(1, "No such object", "inspect", "loop")

	// The refusals (400): a count with another policy, a negative count,
	// an unknown policy, a restart policy with --rm.
	for _, p := range []struct {
		policy map[string]any
		remove bool
		want   string
	}{
		{map[string]any{"Name": "always", "MaximumRetryCount": 2}, false, "can only be used with 'on-failure'"},
		{map[string]any{"Name": "on-failure", "MaximumRetryCount": -1}, false, "cannot be negative"},
		{map[string]any{"Name": "sometimes"}, false, "unknown policy"},
		{map[string]any{"Name": "always"}, true, "AutoRemove"},
	} {
		var msg struct{ Message string }
		body := map[string]any{"Image": "busybox", "Cmd": []string{"true"}, "HostConfig": map[string]any{"RestartPolicy": p.policy, "AutoRemove": p.remove}}
		if st := call(t, api, "POST", "/containers/create", body, &msg); st != 400 || !strings.Contains(msg.Message, p.want) {
			t.Errorf("create with %v: %d %q, want 400 saying %q", p.policy, st, msg.Message, p.want)
		}
	}
	c.expect(1, "maximum retry count can only be used with 'on-failure'", "create", "--restart", "always:3", "busybox", "true")

	// A daemon restart: always containers run again (the one a user
	// stopped too, as Docker documents), the unless-stopped one a user
	// stopped does not, nor the finished ones.
	c.expect(0, "", "run", "-d", "--name", "forever", "--restart", "always", "busybox", "sleep", "300")
	c.expect(0, "", "run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "300")
	c.expect(0, "", "run", "-d", "--name", "stopped", "--restart", "unless-stopped", "busybox", "sleep", "300")
	c.expect(0, "stopped", "stop", "-t", "0", "stopped")
	e.d.terminate(t)
	checkNoLeftovers(t)
	e.start(t, "layerlabd-2.log")
	c.d = e.d
	for name, want := range map[string]bool{"forever": true, "unless": true, "always": true, "stopped": false, "fail2": false, "ok": false} {
		st, running, _, restarting, _, _ := c.state(name)
		if (running || restarting) != want {
			t.Errorf("after the daemon's restart %s is %s, want running=%v", name, st, want)
		}
	}
	c.expect(0, "", "rm", "-f", "forever", "unless", "always", "stopped", "fail2", "ok")

	// A daemon killed while a restart was pending: the next one starts
	// the container, whose policy then goes on counting.
	c.expect(0, "", "run", "-d", "--name", "crashloop", "--restart", "always", "busybox", "false")
	var before int
	eventually(t, 20*time.Second, "crashloop restarting", func() bool {
		_, _, _, restarting, n, _ := c.state("crashloop")
		before = n
		return restarting && n >= 2
	})
	if err := e.d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-e.d.exited
	e.start(t, "layerlabd-3.log")
	c.d = e.d
	eventually(t, 20*time.Second, "crashloop restarted by the new daemon", func() bool {
		_, _, _, _, n, _ := c.state("crashloop")
		return n > before
	})
	c.expect(0, "", "rm", "-f", "crashloop")
	checkNoContainerMounts(t, e.d.cmd.Process.Pid, e.dataRoot)
	e.d.terminate(t)
	checkNoLeftovers(t)
}
