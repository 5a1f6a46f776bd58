package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEndToEndLogs drives the json-file log driver with the docker CLI:
// rotation by --log-opt max-size/max-file (files on disk, logs read back
// across them, --tail), --since and --until, follow across rotations,
// and the refusal of an option the driver does not take.
func TestEndToEndLogs(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)

	// 300 lines of ~60 bytes of JSON each rotate a 2 KiB log many times;
	// two files are kept.
	c.expect(0, "", "run", "--name", "rot", "--log-opt", "max-size=2k", "--log-opt", "max-file=2", "busybox",
		"sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done")
	id := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.Id}}", "rot"))
	logPath := filepath.Join(e.dataRoot, "containers", id, id+"-json.log")
	for _, p := range []string{logPath, logPath + ".1"} {
		if fi, err := os.Stat(p); err != nil || fi.Size() > 2048 {
			t.Errorf("%s: %v, want a file of at most max-size 2k", p, err)
		}
	}
	if _, err := os.Stat(logPath + ".2"); !os.IsNotExist(err) {
		t.Errorf("max-file=2 kept a third file: %v", err)
	}
	out := c.expect(0, "line 299\n", "logs", "rot")
	checkSequence(t, out, "line ")
	if strings.Contains(out, "line 0\n") {
		t.Errorf("docker logs shows line 0, which rotated away:\n%s", out)
	}
	if out := c.expect(0, "", "logs", "--tail", "3", "rot"); out != "line 297\nline 298\nline 299\n" {
		t.Errorf("docker logs --tail 3: %q", out)
	}

	// --since and --until around a pause between two lines.
	c.expect(0, "", "run", "--name", "tm", "busybox", "sh", "-c", "echo early; sleep 2; echo late")
	stamped := c.expect(0, "early", "logs", "-t", "tm")
	first, _, _ := strings.Cut(stamped, " ")
	t0, err := time.Parse(time.RFC3339Nano, first)
	if err != nil {
		t.Fatalf("docker logs -t: %q: %v", stamped, err)
	}
	mid := t0.Add(time.Second).Format(time.RFC3339Nano)
	if out := c.expect(0, "", "logs", "--since", mid, "tm"); out != "late\n" {
		t.Errorf("docker logs --since %s: %q, want only the late line", mid, out)
	}
	if out := c.expect(0, "", "logs", "--until", mid, "tm"); out != "early\n" {
		t.Errorf("docker logs --until %s: %q, want only the early line", mid, out)
	}

	// Follow a container whose log rotates while it is followed: every
	// line once, in order, to the last.
	c.expect(0, "", "run", "-d", "--name", "fol", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox",
		"sh", "-c", "i=0; while [ $i -lt 150 ]; do echo n $i; i=$((i+1)); usleep 10000; done")
	out = c.expect(0, "n 149\n", "logs", "-f", "fol")
	checkSequence(t, out, "n ")

	c.expect(125, "unknown log opt 'nosuch' for json-file log driver", "run", "--rm", "--log-opt", "nosuch=true", "busybox", "true")
	c.expect(125, "max-size", "run", "--rm", "--log-opt", "max-size=lots", "busybox", "true")
	c.expect(0, "rot", "rm", "rot", "tm", "fol")
	if left, _ := filepath.Glob(logPath + "*"); len(left) != 0 {
		t.Errorf("rm left the log files %v", left)
	}
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// checkSequence fails the test unless every line of out is prefix
// followed by a number one more than the line before's.
func checkSequence(t *testing.T, out, prefix string) {
	t.Helper()
	prev := -1
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		n, err := strconv.Atoi(strings.TrimPrefix(line, prefix))
		if err != nil || !strings.HasPrefix(line, prefix) || (prev >= 0 && n != prev+1) {
			t.Fatalf("line %q after %d: the log skips or repeats:\n%s", line, prev, out)
		}
		prev = n
	}
}
