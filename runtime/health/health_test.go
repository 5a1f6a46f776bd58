package health

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// t0 is when the test's container started; results are placed in time
// relative to it, so nothing here reads a clock.
var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

func result(at time.Duration, code int) container.HealthcheckResult {
	return container.HealthcheckResult{Start: t0.Add(at), End: t0.Add(at + time.Millisecond), ExitCode: code, Output: fmt.Sprint(code)}
}

func TestMerge(t *testing.T) {
	image := &container.HealthConfig{Test: []string{"CMD", "true"}, Interval: time.Second, Timeout: 2 * time.Second,
		StartPeriod: 3 * time.Second, StartInterval: 4 * time.Second, Retries: 5}
	if got := Merge(nil, nil); got != nil {
		t.Errorf("Merge(nil, nil) = %+v", got)
	}
	got := Merge(nil, image)
	if got == image || !slices.Equal(got.Test, image.Test) || got.Interval != image.Interval || got.Retries != 5 {
		t.Errorf("Merge(nil, image) = %+v, want a copy of %+v", got, image)
	}
	got.Test[1] = "changed"
	if image.Test[1] != "true" {
		t.Error("Merge's result shares the image's Test")
	}
	// The request's settings win; what it leaves at zero is the image's.
	req := &container.HealthConfig{Test: []string{"CMD-SHELL", "test -f /ok"}, Interval: 200 * time.Millisecond, Retries: 2}
	got = Merge(req, image)
	want := container.HealthConfig{Test: []string{"CMD-SHELL", "test -f /ok"}, Interval: 200 * time.Millisecond, Timeout: 2 * time.Second,
		StartPeriod: 3 * time.Second, StartInterval: 4 * time.Second, Retries: 2}
	if !slices.Equal(got.Test, want.Test) || got.Interval != want.Interval || got.Timeout != want.Timeout ||
		got.StartPeriod != want.StartPeriod || got.StartInterval != want.StartInterval || got.Retries != want.Retries {
		t.Errorf("Merge(req, image) = %+v, want %+v", got, want)
	}
	// An empty test inherits the image's; NONE (--no-healthcheck) does not.
	if got := Merge(&container.HealthConfig{Timeout: time.Second}, image); !slices.Equal(got.Test, image.Test) || got.Timeout != time.Second {
		t.Errorf("an empty test: %+v", got)
	}
	if got := Merge(&container.HealthConfig{Test: []string{"NONE"}}, image); Command(got, nil) != nil {
		t.Errorf("NONE over an image's healthcheck probes %v", Command(got, nil))
	}
}

func TestValidate(t *testing.T) {
	ok := []*container.HealthConfig{
		nil, {}, {Test: []string{"NONE"}}, {Test: []string{"CMD", "true"}, Interval: time.Millisecond, Retries: 0},
		{Test: []string{"CMD-SHELL", "exit 0"}, Timeout: time.Hour, StartPeriod: time.Second, StartInterval: time.Second},
	}
	for _, c := range ok {
		if err := Validate(c); err != nil {
			t.Errorf("Validate(%+v): %v", c, err)
		}
	}
	bad := []struct {
		c    container.HealthConfig
		want string
	}{
		{container.HealthConfig{Interval: -time.Second}, "Interval in Healthcheck cannot be less than 1ms"},
		{container.HealthConfig{Interval: time.Microsecond}, "Interval in Healthcheck cannot be less than 1ms"},
		{container.HealthConfig{Timeout: -1}, "Timeout in Healthcheck cannot be less than 1ms"},
		{container.HealthConfig{Retries: -1}, "Retries in Healthcheck cannot be negative"},
		{container.HealthConfig{StartPeriod: -time.Second}, "StartPeriod in Healthcheck cannot be less than 1ms"},
		{container.HealthConfig{StartInterval: 10}, "StartInterval in Healthcheck cannot be less than 1ms"},
		{container.HealthConfig{Test: []string{"CMD"}}, "has no command"},
		{container.HealthConfig{Test: []string{"CMD-SHELL", " "}}, "has no command"},
		{container.HealthConfig{Test: []string{"HTTP", "/"}}, "must be CMD, CMD-SHELL or NONE"},
	}
	for _, b := range bad {
		err := Validate(&b.c)
		if err == nil || !strings.Contains(err.Error(), b.want) || !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("Validate(%+v) = %v, want %q wrapping ErrInvalidArgument", b.c, err, b.want)
		}
	}
}

func TestCommand(t *testing.T) {
	for _, c := range []struct {
		test, shell, want []string
	}{
		{nil, nil, nil},
		{[]string{"NONE"}, nil, nil},
		{[]string{"CMD"}, nil, nil},
		{[]string{"WHAT", "x"}, nil, nil},
		{[]string{"CMD", "test", "-f", "/ok"}, nil, []string{"test", "-f", "/ok"}},
		{[]string{"CMD-SHELL", "test -f /ok"}, nil, []string{"/bin/sh", "-c", "test -f /ok"}},
		{[]string{"CMD-SHELL", "echo hi"}, []string{"/bin/bash", "-ec"}, []string{"/bin/bash", "-ec", "echo hi"}},
	} {
		if got := Command(&container.HealthConfig{Test: c.test}, c.shell); !slices.Equal(got, c.want) {
			t.Errorf("Command(%q, %q) = %q, want %q", c.test, c.shell, got, c.want)
		}
	}
	if Command(nil, nil) != nil {
		t.Error("Command(nil) probes")
	}
}

func TestEffective(t *testing.T) {
	if got := Effective(nil); got != (Settings{30 * time.Second, 30 * time.Second, 0, 5 * time.Second, 3}) {
		t.Errorf("defaults: %+v", got)
	}
	got := Effective(&container.HealthConfig{Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: 3 * time.Second, StartInterval: 4 * time.Second, Retries: 7})
	if got != (Settings{time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 7}) {
		t.Errorf("set: %+v", got)
	}
}

func TestDelay(t *testing.T) {
	s := Settings{Interval: 10 * time.Second, StartPeriod: 30 * time.Second, StartInterval: time.Second, Retries: 3}
	for _, c := range []struct {
		at     time.Duration
		status string
		want   time.Duration
	}{
		{0, Starting, time.Second},                // within the start period, starting: the start interval
		{29 * time.Second, Starting, time.Second}, // still within it
		{30 * time.Second, Starting, s.Interval},  // the start period is over
		{5 * time.Second, Healthy, s.Interval},    // healthy already: the interval
		{5 * time.Second, Unhealthy, s.Interval},  // cannot happen within it, but the interval
		{time.Hour, Starting, 10 * time.Second},   // long after
		{-time.Second, Starting, time.Second},     // a clock step back: still starting
		{29 * time.Second, Healthy, 10 * time.Second},
	} {
		if got := s.Delay(t0, t0.Add(c.at), c.status); got != c.want {
			t.Errorf("Delay at %v, %s = %v, want %v", c.at, c.status, got, c.want)
		}
	}
	if got := (Settings{Interval: time.Second, StartInterval: time.Millisecond}).Delay(t0, t0, Starting); got != time.Second {
		t.Errorf("no start period: %v, want the interval", got)
	}
}

// TestRecordStreaks walks dockerd's state machine: starting until the
// first success, the failures that make it unhealthy, a success that
// brings it back.
func TestRecordStreaks(t *testing.T) {
	s := Settings{Interval: time.Second, Retries: 2}
	h := Begin(nil)
	steps := []struct {
		code    int
		status  string
		streak  int
		changed bool
	}{
		{1, Starting, 1, false},
		{0, Healthy, 0, true},
		{1, Healthy, 1, false},
		{2, Unhealthy, 2, true},   // the retries-th failure in a row
		{-1, Unhealthy, 3, false}, // a timed-out probe is a failure too
		{0, Healthy, 0, true},
		{0, Healthy, 0, false},
	}
	for i, st := range steps {
		changed := Record(h, s, t0, result(time.Duration(i)*time.Second, st.code))
		if h.Status != st.status || h.FailingStreak != st.streak || changed != st.changed {
			t.Fatalf("step %d (exit %d): %s streak %d changed %v, want %s %d %v", i, st.code, h.Status, h.FailingStreak, changed, st.status, st.streak, st.changed)
		}
	}
	// Starting straight to unhealthy without a success.
	h = Begin(nil)
	Record(h, s, t0, result(time.Second, 1))
	if !Record(h, s, t0, result(2*time.Second, 1)) || h.Status != Unhealthy {
		t.Errorf("two failures with retries 2: %+v", h)
	}
}

// TestRecordStartPeriod: failures of probes that began within the start
// period do not count while the container is starting; once it was
// healthy, or the period is over, they do.
func TestRecordStartPeriod(t *testing.T) {
	s := Settings{Interval: time.Second, StartPeriod: 10 * time.Second, Retries: 1}
	h := Begin(nil)
	for _, at := range []time.Duration{time.Second, 5 * time.Second, 9*time.Second + 999*time.Millisecond} {
		if Record(h, s, t0, result(at, 1)); h.Status != Starting || h.FailingStreak != 0 {
			t.Fatalf("a failure at %v within the start period: %+v", at, h)
		}
	}
	if Record(h, s, t0, result(10*time.Second, 1)); h.Status != Unhealthy || h.FailingStreak != 1 {
		t.Errorf("a failure as the start period ends: %+v, want unhealthy", h)
	}
	// Healthy within the period: a failure counts at once.
	h = Begin(nil)
	Record(h, s, t0, result(time.Second, 0))
	if Record(h, s, t0, result(2*time.Second, 1)); h.Status != Unhealthy {
		t.Errorf("a failure after a success within the start period: %+v, want unhealthy", h)
	}
	// A restart starts afresh: starting, no streak, the log kept.
	h2 := Begin(h)
	if h2.Status != Starting || h2.FailingStreak != 0 || len(h2.Log) != 2 {
		t.Errorf("Begin after a run: %+v", h2)
	}
}

func TestRecordLog(t *testing.T) {
	h := Begin(nil)
	s := Settings{Retries: 3}
	for i := range 8 {
		Record(h, s, t0, result(time.Duration(i)*time.Second, i%2))
	}
	if len(h.Log) != MaxLog {
		t.Fatalf("log of %d results, want %d", len(h.Log), MaxLog)
	}
	for i, r := range h.Log {
		if want := t0.Add(time.Duration(i+3) * time.Second); !r.Start.Equal(want) {
			t.Errorf("log[%d] started %v, want %v (oldest first, the last five)", i, r.Start, want)
		}
	}
}

func TestOutput(t *testing.T) {
	var o Output
	fmt.Fprint(&o, "short")
	if o.String() != "short" {
		t.Errorf("%q", o.String())
	}
	var big Output
	chunk := strings.Repeat("x", 1000)
	for range 5 {
		if n, err := big.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v: a probe's writes must never fail", n, err)
		}
	}
	if got := big.String(); len(got) != MaxOutput+3 || !strings.HasSuffix(got, "x...") {
		t.Errorf("5000 bytes kept as %d bytes ending %q, want the first %d and ...", len(got), got[len(got)-5:], MaxOutput)
	}
	var exact Output
	exact.Write([]byte(strings.Repeat("y", MaxOutput)))
	if got := exact.String(); len(got) != MaxOutput || strings.HasSuffix(got, "...") {
		t.Errorf("exactly %d bytes: %d bytes, cut mark %v", MaxOutput, len(got), strings.HasSuffix(got, "..."))
	}
}

func TestText(t *testing.T) {
	for h, want := range map[*container.Health]string{
		nil: "none", {Status: Starting}: "health: starting", {Status: Healthy}: "healthy", {Status: Unhealthy}: "unhealthy",
	} {
		if got := Text(h); got != want {
			t.Errorf("Text(%+v) = %q, want %q", h, got, want)
		}
	}
}
