package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// health is a container's State.Health, read with docker inspect (nil
// when it has none).
func (c cli) health(name string) *container.Health {
	c.t.Helper()
	var h *container.Health
	out := c.expect(0, "", "inspect", "--format", "{{json .State.Health}}", name)
	if err := json.Unmarshal([]byte(out), &h); err != nil {
		c.t.Fatalf("inspect %s: State.Health %q: %v", name, out, err)
	}
	return h
}

// waitHealth polls docker inspect until the container's health is want.
func (c cli) waitHealth(t *testing.T, name, want string) *container.Health {
	t.Helper()
	var h *container.Health
	eventually(t, time.Minute, name+" "+want, func() bool {
		h = c.health(name)
		return h != nil && h.Status == want
	})
	return h
}

// psNames is `docker ps` with args, the names it lists.
func (c cli) psNames(args ...string) []string {
	c.t.Helper()
	return strings.Fields(c.expect(0, "", append(append([]string{"ps"}, args...), "--format", "{{.Names}}")...))
}

// TestEndToEndHealth drives health checks with the real docker CLI: a
// CMD-SHELL probe that goes starting → healthy → unhealthy as a file
// comes and goes (inspect's State.Health, ps's status and health filter,
// health_status events, the probes' exec events), a probe that hangs
// killed at --health-timeout, an image's HEALTHCHECK (commit -c) run by
// its containers and turned off by --no-healthcheck, no probe while
// paused, the monitor back after a daemon restart with the health log
// kept, and dockerd's refusals of bad settings.
func TestEndToEndHealth(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)
	t0 := time.Now()
	events, _ := watchEvents(t, e, "--since", apiTime(t0), "--filter", "event=health_status", "--format", "{{.Actor.Attributes.name}} {{.Action}}")

	// The start period keeps the failures before the file exists from
	// counting, so the container stays starting until the test makes it.
	c.expect(0, "", "run", "-d", "--name", "hc", "--health-cmd", "test -f /tmp/ok && echo ok", "--health-interval", "200ms",
		"--health-retries", "2", "--health-start-period", "5m", "busybox", "sleep", "600")
	if h := c.health("hc"); h == nil || h.Status != "starting" {
		t.Fatalf("a fresh container's health: %+v, want starting", h)
	}
	c.expect(0, "(health: starting)", "ps", "--filter", "name=hc", "--format", "{{.Status}}")
	if got := c.psNames("--filter", "health=starting"); !slices.Equal(got, []string{"hc"}) {
		t.Errorf("ps --filter health=starting: %v", got)
	}
	var h *container.Health
	eventually(t, time.Minute, "failing probes logged while starting", func() bool {
		h = c.health("hc")
		return len(h.Log) > 0
	})
	if h.FailingStreak != 0 || h.Log[0].ExitCode != 1 {
		t.Errorf("failures within the start period: %+v, want streak 0 and exit 1 logged", h)
	}
	c.expect(0, "", "exec", "hc", "touch", "/tmp/ok")
	h = c.waitHealth(t, "hc", "healthy")
	last := h.Log[len(h.Log)-1]
	if last.ExitCode != 0 || last.Output != "ok\n" || last.End.Before(last.Start) || h.FailingStreak != 0 {
		t.Errorf("healthy: %+v, last result %+v", h, last)
	}
	if l := nextEvent(t, events); l != "hc health_status: healthy" {
		t.Errorf("first health event %q, want hc health_status: healthy", l)
	}
	c.expect(0, "(healthy)", "ps", "--filter", "name=hc", "--format", "{{.Status}}")

	c.expect(0, "", "exec", "hc", "rm", "/tmp/ok")
	h = c.waitHealth(t, "hc", "unhealthy")
	if h.FailingStreak < 2 || len(h.Log) > 5 {
		t.Errorf("unhealthy: streak %d (want >= 2), %d results logged (at most 5)", h.FailingStreak, len(h.Log))
	}
	if l := nextEvent(t, events); l != "hc health_status: unhealthy" {
		t.Errorf("second health event %q, want hc health_status: unhealthy", l)
	}
	c.expect(0, "(unhealthy)", "ps", "--filter", "name=hc", "--format", "{{.Status}}")
	if got := c.psNames("--filter", "health=unhealthy"); !slices.Equal(got, []string{"hc"}) {
		t.Errorf("ps --filter health=unhealthy: %v", got)
	}
	if got := c.psNames("--filter", "health=healthy"); len(got) != 0 {
		t.Errorf("ps --filter health=healthy: %v, want none", got)
	}
	// Each probe is an exec with dockerd's events.
	probes := c.expect(0, "", "events", "--since", apiTime(t0), "--until", apiTime(time.Now()), "--filter", "container=hc",
		"--filter", "event=exec_create", "--filter", "event=exec_start", "--filter", "event=exec_die", "--format", "{{.Action}}")
	for _, want := range []string{"exec_create: /bin/sh -c test -f /tmp/ok && echo ok", "exec_start: /bin/sh -c test -f /tmp/ok && echo ok", "exec_die"} {
		if !strings.Contains(probes, want) {
			t.Errorf("probe events lack %q:\n%s", want, probes)
		}
	}
	c.expect(1, "Unrecognised filter value for health: sick", "ps", "--filter", "health=sick")

	checkHangingProbe(t, c)

	// An image's HEALTHCHECK (here from commit -c) is what its containers
	// run; --no-healthcheck turns it off.
	c.expect(0, "sha256:", "commit", "-c", `HEALTHCHECK --interval=100ms --retries=1 CMD ["true"]`, "hc", "hcimg")
	c.expect(0, `{"Test":["CMD","true"],"Interval":100000000,"Retries":1}`, "image", "inspect", "--format", "{{json .Config.Healthcheck}}", "hcimg")
	c.expect(0, "", "run", "-d", "--name", "inh", "--restart", "always", "hcimg", "sleep", "600")
	c.waitHealth(t, "inh", "healthy")
	c.expect(0, "", "run", "-d", "--name", "nohc", "--no-healthcheck", "hcimg", "sleep", "600")
	if h := c.health("nohc"); h != nil {
		t.Errorf("--no-healthcheck: State.Health %+v, want none", h)
	}
	c.expect(0, `["NONE"]`, "inspect", "--format", "{{json .Config.Healthcheck.Test}}", "nohc")
	if got := c.psNames("--filter", "health=none"); !slices.Equal(got, []string{"nohc"}) {
		t.Errorf("ps --filter health=none: %v", got)
	}

	// Paused, it is not probed (as dockerd); unpaused, it is again.
	c.expect(0, "", "pause", "inh")
	tPaused := time.Now()
	// A probe under way was ended before the freeze; none starts in
	// between. Give the 100 ms interval room to show a wrong probe.
	time.Sleep(time.Second)
	tUnpause := time.Now()
	c.expect(0, "", "unpause", "inh")
	byAction := func(since, until time.Time) string {
		return c.expect(0, "", "events", "--since", apiTime(since), "--until", apiTime(until), "--filter", "container=inh",
			"--filter", "event=exec_create", "--format", "{{.Action}}")
	}
	if out := strings.TrimSpace(byAction(tPaused, tUnpause)); out != "" {
		t.Errorf("probes while paused:\n%s", out)
	}
	eventually(t, time.Minute, "a probe after the unpause", func() bool { return byAction(tUnpause, time.Now()) != "" })
	// As with dockerd, a kill with SIGKILL or the stop signal thaws a
	// paused container, another signal waits for the unpause; one that
	// survives the stop signal (sleep, its pid 1, has no handler) is
	// probed again.
	c.expect(0, "", "pause", "inh")
	c.expect(0, "", "kill", "-s", "HUP", "inh")
	if st, _, paused, _, _, _ := c.state("inh"); st != "paused" || !paused {
		t.Errorf("after kill -s HUP of the paused inh: %s paused=%v, want still paused", st, paused)
	}
	c.expect(0, "", "kill", "-s", "TERM", "inh")
	tKill := time.Now()
	eventually(t, time.Minute, "a probe after a kill thawed it", func() bool { return byAction(tKill, time.Now()) != "" })
	if st, running, paused, _, _, _ := c.state("inh"); st != "running" || !running || paused {
		t.Errorf("after kill -s TERM (its stop signal) of the paused inh: %s running=%v paused=%v", st, running, paused)
	}

	// A daemon restart: the policy starts inh again, and its monitor with
	// it; hc, killed before, keeps the health its record holds.
	c.expect(0, "hc", "kill", "hc")
	// Exited once its run's end was recorded, after the monitor's last
	// result: the health is final from then on.
	c.expect(0, "137", "wait", "hc")
	hcBefore := c.health("hc")
	e.d.terminate(t)
	e.start(t, "layerlabd-2.log")
	c.d = e.d
	tRestart := time.Now()
	eventually(t, time.Minute, "inh healthy after a probe of the new run", func() bool {
		h := c.health("inh")
		return h != nil && h.Status == "healthy" && h.Log[len(h.Log)-1].Start.After(tRestart)
	})
	hcAfter := c.health("hc")
	if hcAfter == nil || hcAfter.Status != "unhealthy" || len(hcAfter.Log) != len(hcBefore.Log) ||
		!hcAfter.Log[len(hcAfter.Log)-1].Start.Equal(hcBefore.Log[len(hcBefore.Log)-1].Start) {
		t.Errorf("hc's health across the restart: before %+v, after %+v", hcBefore, hcAfter)
	}

	// dockerd's refusals (the CLI refuses negative values itself).
	c.expect(1, "Interval in Healthcheck cannot be less than 1ms", "create", "--health-interval", "500us", "--health-cmd", "true", "busybox")
	c.expect(1, "Timeout in Healthcheck cannot be less than 1ms", "create", "--health-timeout", "10ns", "--health-cmd", "true", "busybox")
	if out, code := c.run("create", "--health-start-interval", "1s", "--health-cmd", "true", "busybox"); code == 0 || !strings.Contains(out, "requires API version 1.44") {
		t.Errorf("--health-start-interval against API 1.41: exit %d: %s", code, out)
	}
	c.expect(125, "--health-retries cannot be negative", "create", "--health-retries", "-1", "--health-cmd", "true", "busybox")
	checkAPIErrors(t, apiClient(e.sock), []apiError{
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Interval":-1000000000}}`), 400, "Interval in Healthcheck cannot be less than 1ms"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"Retries":-1}}`), 400, "Retries in Healthcheck cannot be negative"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["CMD","true"],"StartPeriod":5}}`), 400, "StartPeriod in Healthcheck cannot be less than 1ms"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"Healthcheck":{"Test":["HTTP","/"]}}`), 400, "the first word must be CMD, CMD-SHELL or NONE"},
	})
	c.expect(1, "--retries cannot be negative", "commit", "-c", "HEALTHCHECK --retries=-1 CMD true", "hc", "bad")

	c.expect(0, "", "rm", "-f", "hc", "inh", "nohc")
	checkNoContainerMounts(t, e.d.cmd.Process.Pid, e.dataRoot)
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// checkHangingProbe: a probe that hangs is killed at the timeout (2 s:
// its echo surely ran by then), a failure saying so with what it wrote,
// long before the probe's own end;
// its exec dies of SIGKILL. The shell forks the sleep, which keeps the
// output pipe open after the shell's death: the result must not wait for
// it.
func checkHangingProbe(t *testing.T, c cli) {
	t.Helper()
	tHang := time.Now()
	// 5s: the probe's exec must have started and printed within it,
	// which through runc under a loaded CI took over 2s once.
	c.expect(0, "", "run", "-d", "--name", "hang", "--health-cmd", "echo started; sleep 30; true", "--health-interval", "100ms",
		"--health-timeout", "5s", "--health-retries", "1", "busybox", "sleep", "600")
	h := c.waitHealth(t, "hang", "unhealthy")
	last := h.Log[len(h.Log)-1]
	if last.ExitCode != -1 || last.Output != "Health check exceeded timeout (5s): started\n" || last.End.Sub(last.Start) > 15*time.Second {
		t.Errorf("a hanging probe: %+v (took %v)", last, last.End.Sub(last.Start))
	}
	c.expect(0, "137", "events", "--since", apiTime(tHang), "--until", apiTime(time.Now()), "--filter", "container=hang",
		"--filter", "event=exec_die", "--format", "{{.Actor.Attributes.exitCode}}")
	c.expect(0, "hang", "rm", "-f", "hang")
}

// TestEndToEndHealthRunc runs probes through the runc binary's exec
// (layerlabd --runtime runc): a container goes healthy with the probe's
// output logged, and a hanging probe is killed at its timeout.
func TestEndToEndHealthRunc(t *testing.T) {
	e, c := startRuncDaemon(t)
	c.expect(0, "", "run", "-d", "--name", "hc", "--health-cmd", "echo ok from runc", "--health-interval", "100ms", "busybox", "sleep", "600")
	h := c.waitHealth(t, "hc", "healthy")
	if last := h.Log[len(h.Log)-1]; last.ExitCode != 0 || last.Output != "ok from runc\n" {
		t.Errorf("runc probe: %+v", last)
	}
	checkHangingProbe(t, c)
	c.expect(0, "hc", "rm", "-f", "hc")
	e.d.terminate(t)
	checkNoLeftovers(t)
}
