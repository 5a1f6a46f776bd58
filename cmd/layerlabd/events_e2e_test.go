package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// apiTime is t as the docker CLI sends since and until.
func apiTime(t time.Time) string { return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond()) }

// watchEvents runs `docker events` with args until the test ends; it
// returns the output lines and a func that reads what the CLI wrote to
// stderr so far (for a failure's message).
func watchEvents(t *testing.T, e testEnv, args ...string) (<-chan string, func() string) {
	t.Helper()
	ev := exec.Command(dockerCLI, append([]string{"-H", "unix://" + e.sock, "events"}, args...)...)
	ev.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	stdout, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errFile, err := os.CreateTemp(e.tmp, "events-stderr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { errFile.Close() })
	ev.Stderr = errFile
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ev.Process.Kill(); _ = ev.Wait() })
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return lines, func() string {
		b, _ := os.ReadFile(errFile.Name())
		return string(b)
	}
}

// nextEvent waits up to a minute for the next line of an event stream.
func nextEvent(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("docker events ended early")
		}
		return l
	case <-time.After(time.Minute):
		t.Fatal("no event within a minute")
	}
	return ""
}

// TestEndToEndEvents drives GET /events and the system routes with the
// real docker CLI: a live `docker events --filter type=container --filter
// event=start` sees exactly the start of the container run meanwhile;
// --since/--until replay a container's life, image tag/untag and exec
// events; a bad filter is refused; `docker system df` reports the
// containers' writable layers and the image layers; `docker system prune`
// removes the stopped containers.
func TestEndToEndEvents(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)
	c.expect(0, "", "run", "--name", "before", "busybox", "true")

	// Live: --since t0 covers the moment between the CLI's start and the
	// daemon's subscription; a last container, "sentinel", ends the
	// watch when its start arrives (no time window to race).
	t0 := time.Now()
	lines, stderr := watchEvents(t, e, "--since", apiTime(t0),
		"--filter", "type=container", "--filter", "event=start", "--format", "{{.Actor.Attributes.name}} {{.Action}} {{.Type}}")
	c.expect(0, "hi", "run", "--name", "ev1", "--label", "tier=front", "busybox", "echo", "hi")
	c.expect(0, "", "create", "--name", "ev2", "busybox", "true") // created, never started
	c.expect(0, "before", "rm", "before")
	// Image and exec events, for the replay below.
	c.expect(0, "", "tag", "busybox", "evtag:1")
	c.expect(0, "Untagged: evtag:1", "rmi", "evtag:1")
	c.expect(0, "", "run", "-d", "--name", "ex", "busybox", "sleep", "300")
	c.expect(0, "", "exec", "ex", "true")
	c.expect(0, "", "run", "--name", "sentinel", "busybox", "true")
	var live []string
	timeout := time.After(time.Minute)
	for done := false; !done; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("docker events ended early: %v\n%s", live, stderr())
			}
			live = append(live, l)
			done = l == "sentinel start container"
		case <-timeout:
			t.Fatalf("no sentinel start from docker events within a minute: %v\n%s", live, stderr())
		}
	}
	if got := strings.Join(live, "\n"); got != "ev1 start container\nex start container\nsentinel start container" {
		t.Fatalf("docker events --filter type=container --filter event=start printed:\n%s\nwant the starts of ev1, ex and sentinel only", got)
	}

	// Replay of ev1's life, by name and by label.
	until := apiTime(time.Now())
	out := c.expect(0, "", "events", "--since", apiTime(t0), "--until", until, "--filter", "container=ev1", "--format", "{{.Action}}")
	if got := strings.Fields(out); strings.Join(got, " ") != "create attach start die" {
		t.Fatalf("ev1's events: %q, want create attach start die", got)
	}
	out = c.expect(0, "", "events", "--since", apiTime(t0), "--until", until, "--filter", "label=tier=front", "--filter", "event=die",
		"--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
	if strings.TrimSpace(out) != "ev1 0" {
		t.Fatalf("die events of tier=front: %q, want ev1's with exit code 0", out)
	}
	out = c.expect(0, "", "events", "--since", apiTime(t0), "--until", until, "--filter", "type=image", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if got := strings.TrimSpace(out); got != "tag evtag:1\nuntag evtag:1" {
		t.Fatalf("image events: %q, want tag and untag of evtag:1", got)
	}
	out = c.expect(0, "", "events", "--since", apiTime(t0), "--until", until, "--filter", "container=ex", "--format", "{{.Action}}")
	for _, want := range []string{"exec_create: true", "exec_start: true", "exec_die"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("ex's events lack %q:\n%s", want, out)
		}
	}
	out = c.expect(0, "", "events", "--since", apiTime(t0), "--until", until, "--filter", "event=destroy", "--format", "{{.Actor.Attributes.name}}")
	if strings.TrimSpace(out) != "before" {
		t.Errorf("destroy events: %q, want before's", out)
	}
	c.expect(1, "bogus", "events", "--since", apiTime(t0), "--until", until, "--filter", "bogus=1")

	// docker system df: the image's layers, a container's 3 MiB and a
	// volume's 2 MiB.
	c.expect(0, "", "run", "--name", "writer", "-v", "dfvol:/v", "busybox", "sh", "-c",
		"dd if=/dev/zero of=/data bs=1M count=3 && dd if=/dev/zero of=/v/d bs=1M count=2")
	var du struct {
		LayersSize int64
		Containers []struct {
			Names  []string
			SizeRw int64
		}
		Images  []struct{ Containers int64 }
		Volumes []struct {
			Name      string
			UsageData struct{ Size, RefCount int64 }
		}
	}
	if st := call(t, apiClient(e.sock), "GET", "/system/df", nil, &du); st != 200 {
		t.Fatalf("GET /system/df: %d", st)
	}
	var writerRw int64
	for _, ct := range du.Containers {
		if ct.Names[0] == "/writer" {
			writerRw = ct.SizeRw
		}
	}
	// The archive holds busybox:latest and busybox:two (unused).
	used := 0
	for _, img := range du.Images {
		used += int(img.Containers)
	}
	if du.LayersSize < 1<<20 || writerRw < 3<<20 || writerRw > 4<<20 || len(du.Images) != 2 || used != 5 ||
		len(du.Volumes) != 1 || du.Volumes[0].Name != "dfvol" || du.Volumes[0].UsageData.Size < 2<<20 || du.Volumes[0].UsageData.RefCount != 1 {
		t.Fatalf("system df: %+v, want busybox's layers, writer's 3 MiB, busybox used by 5 containers and dfvol's 2 MiB used by writer", du)
	}
	out = c.expect(0, "", "system", "df", "--format", "{{.Type}} {{.TotalCount}} {{.Active}}")
	for _, want := range []string{"Images 2 1", "Containers 5 1", "Local Volumes 1 1", "Build Cache 0 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("docker system df lacks %q:\n%s", want, out)
		}
	}
	c.expect(0, "writer", "system", "df", "-v")

	// docker system prune: the stopped containers go, the running one stays.
	out = c.expect(0, "Total reclaimed space", "system", "prune", "-f")
	c.expect(0, "ex\n", "ps", "-a", "--format", "{{.Names}}")
	if got, _ := c.run("ps", "-aq"); len(strings.Fields(got)) != 1 {
		t.Fatalf("after system prune: %q, want only ex (prune said:\n%s)", got, out)
	}
	c.expect(0, "ex", "rm", "-f", "ex")
	c.expect(0, "dfvol", "volume", "rm", "dfvol")

	// Streams that never end on their own (the docker events above, a
	// docker stats of a stopped container) end at SIGTERM: the daemon
	// exits well before its 30 s backstop for other requests.
	c.expect(0, "", "create", "--name", "idle", "busybox", "true")
	st := exec.Command(dockerCLI, "-H", "unix://"+e.sock, "stats", "--format", "{{.Name}}", "idle")
	st.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-config"), "DOCKER_HOST=", "DOCKER_CONTEXT=")
	stOut, err := st.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Process.Kill(); _ = st.Wait() })
	if line, err := bufio.NewReader(stOut).ReadString('\n'); err != nil || !strings.Contains(line, "idle") {
		t.Fatalf("docker stats idle: %q %v", line, err)
	}
	begin := time.Now()
	e.d.terminate(t)
	if took := time.Since(begin); took > 20*time.Second {
		t.Fatalf("SIGTERM with docker events and docker stats streaming took %v: the streams did not end", took)
	}
	checkNoLeftovers(t)
}
