package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/layerlab/layerlab/runtime/containers"
)

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                  now.Add(-24 * time.Hour),
		"1700000000":           time.Unix(1700000000, 0),
		"2025-06-01T10:00:00Z": time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseUntil(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("until=%s: %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := parseUntil("yesterday", now); err == nil {
		t.Error("until=yesterday was accepted")
	}
}

func TestMatchContainer(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := containers.Record{ID: "abcdef0123", Name: "web", Image: "busybox", ImageID: "sha256:1111", Created: created,
		Config: &container.Config{Labels: map[string]string{"tier": "front"}},
		State:  containers.State{Status: containers.Exited, ExitCode: 3}}
	for _, c := range []struct {
		args   []filters.KeyValuePair
		exited []int
		want   bool
	}{
		{nil, nil, true},
		{[]filters.KeyValuePair{filters.Arg("status", "exited")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("status", "running")}, nil, false},
		{[]filters.KeyValuePair{filters.Arg("name", "we")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("name", "^/db$")}, nil, false},
		{[]filters.KeyValuePair{filters.Arg("id", "abcd")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("label", "tier=front")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("label", "tier=back")}, nil, false},
		{[]filters.KeyValuePair{filters.Arg("ancestor", "busybox")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("ancestor", "alpine")}, nil, false},
		{nil, []int{3}, true},
		{nil, []int{0}, false},
		{[]filters.KeyValuePair{filters.Arg("health", "none")}, nil, true},
		{[]filters.KeyValuePair{filters.Arg("health", "healthy")}, nil, false},
	} {
		f := filters.NewArgs(c.args...)
		if got := matchContainer(f, r, c.exited, nil, time.Time{}, time.Time{}); got != c.want {
			t.Errorf("%v exited=%v: %v, want %v", c.args, c.exited, got, c.want)
		}
	}
	if matchContainer(filters.NewArgs(), r, nil, nil, created, time.Time{}) {
		t.Error("before= its own creation time matched")
	}
	if !matchContainer(filters.NewArgs(), r, nil, nil, created.Add(time.Second), created.Add(-time.Second)) {
		t.Error("between before and since did not match")
	}
}

// TestHealthFilterAndStatus: ps's health filter matches the record's
// health (none without one), and a running container's status carries it
// as dockerd words it.
func TestHealthFilterAndStatus(t *testing.T) {
	r := containers.Record{ID: "abc", Name: "hc", Config: &container.Config{},
		State: containers.State{Status: containers.Running, StartedAt: time.Now().Add(-3 * time.Second),
			Health: &container.Health{Status: container.Starting}}}
	for status, text := range map[string]string{container.Starting: "(health: starting)", container.Healthy: "(healthy)", container.Unhealthy: "(unhealthy)"} {
		r.State.Health.Status = status
		if !matchContainer(filters.NewArgs(filters.Arg("health", status)), r, nil, nil, time.Time{}, time.Time{}) {
			t.Errorf("health=%s did not match a %s container", status, status)
		}
		if matchContainer(filters.NewArgs(filters.Arg("health", "none")), r, nil, nil, time.Time{}, time.Time{}) {
			t.Errorf("health=none matched a %s container", status)
		}
		if got := statusText(r.State); !strings.HasPrefix(got, "Up ") || !strings.HasSuffix(got, " "+text) {
			t.Errorf("status of a running %s container: %q, want Up ... %s", status, got, text)
		}
	}
	r.State.Status = containers.Paused
	if got := statusText(r.State); !strings.HasSuffix(got, "(Paused)") {
		t.Errorf("paused: %q", got)
	}
	r.State = containers.State{Status: containers.Exited, ExitCode: 1, Health: &container.Health{Status: container.Unhealthy}}
	if got := statusText(r.State); !strings.HasPrefix(got, "Exited (1)") || strings.Contains(got, "unhealthy") {
		t.Errorf("exited: %q, want no health", got)
	}
}
