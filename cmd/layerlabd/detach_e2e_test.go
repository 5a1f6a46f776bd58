package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEndToEndDetachKeys attaches the docker CLI to a TTY container
// through a terminal (script), types a command and then ctrl-p ctrl-q:
// the CLI detaches and the container runs on, its shell still reading;
// a custom --detach-keys works the same; bad keys are a 400.
func TestEndToEndDetachKeys(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)
	c.expect(0, "", "run", "-dit", "--name", "dk", "busybox", "sh")

	// detach runs the CLI command (attach or exec -it) in a terminal,
	// types input slowly and wants the CLI to detach.
	detach := func(command, input string) {
		t.Helper()
		cmd := exec.Command("script", "-qec", fmt.Sprintf("%s -H unix://%s %s", dockerCLI, e.sock, command), "/dev/null")
		cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
		// Typed slowly, as a user would: the attach must be up first.
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = r
		go func() {
			time.Sleep(500 * time.Millisecond)
			for _, part := range strings.SplitAfter(input, "\n") {
				_, _ = w.WriteString(part)
				time.Sleep(300 * time.Millisecond)
			}
			// script ends at its input's EOF: keep it open a while so a
			// missed detach shows as a timeout, not a clean exit.
			time.Sleep(10 * time.Second)
			w.Close()
		}()
		done := make(chan struct{})
		var out []byte
		go func() { out, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(8 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("docker %s did not detach:\n%s\n%s", command, out, e.d.logText())
		}
		r.Close()
		// The CLI exits 1 after a detach, as with dockerd.
		if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "read escape sequence") {
			t.Fatalf("docker %s: exit %d, %q; want 1 and \"read escape sequence\"", command, code, out)
		}
	}
	detach("attach dk", "echo typed > /tmp/t\n\x10\x11")
	c.expect(0, "running", "inspect", "-f", "{{.State.Status}}", "dk")
	c.expect(0, "typed\n", "exec", "dk", "cat", "/tmp/t")

	// A custom sequence; ctrl-p alone is input now.
	detach("attach --detach-keys=ctrl-x,x dk", "echo again > /tmp/t\n\x18x")
	c.expect(0, "running", "inspect", "-f", "{{.State.Status}}", "dk")
	c.expect(0, "again\n", "exec", "dk", "cat", "/tmp/t")

	// exec -it detaches the same way; the exec'd shell runs on.
	detach("exec -it dk sh -c 'echo $$ > /tmp/pid; exec sh'", "echo in exec > /tmp/e\n\x10\x11")
	c.expect(0, "in exec\n", "exec", "dk", "cat", "/tmp/e")
	c.expect(0, "", "exec", "dk", "sh", "-c", "kill -0 $(cat /tmp/pid)")
	c.expect(1, "invalid detach keys", "exec", "--detach-keys=ctrl-1", "dk", "true")

	// Bad keys: dockerd's 400, from the raw API too.
	conn, err := net.Dial("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1.41/containers/dk/attach?stream=1&stdin=1&detachKeys=ctrl-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if resp := string(buf[:n]); !strings.HasPrefix(resp, "HTTP/1.1 400") || !strings.Contains(resp, "invalid detach keys") {
		t.Errorf("attach with detachKeys=ctrl-1: %q, want 400 invalid detach keys", resp)
	}
	c.expect(0, "dk", "rm", "-f", "dk")
	e.d.terminate(t)
	checkNoLeftovers(t)
}
