package events

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// fixedClock makes the bus stamp events 1 s apart from t0.
func fixedClock(b *Bus, t0 time.Time) {
	n := 0
	b.now = func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
}

func TestRingKeepsTheLastEvents(t *testing.T) {
	b := New(3)
	t0 := time.Unix(1_700_000_000, 0)
	fixedClock(b, t0)
	for i := range 5 {
		b.Publish(events.ContainerEventType, events.ActionStart, fmt.Sprint(i), nil)
	}
	replay, sub := b.Subscribe(t0, Filter{})
	sub.Close()
	if len(replay) != 3 || replay[0].Actor.ID != "2" || replay[2].Actor.ID != "4" {
		t.Fatalf("replay %+v, want events 2..4", replay)
	}
	replay, sub = b.Subscribe(t0.Add(4*time.Second), Filter{})
	sub.Close()
	if len(replay) != 2 || replay[0].Actor.ID != "3" {
		t.Fatalf("since the 4th event: %+v, want events 3 and 4", replay)
	}
	if replay, sub = b.Subscribe(time.Time{}, Filter{}); len(replay) != 0 {
		t.Fatalf("no since: replay %+v, want none", replay)
	}
	sub.Close()
	sub.Close() // twice is fine
}

func TestFilters(t *testing.T) {
	b := New(0)
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	b.Publish(events.ContainerEventType, events.ActionCreate, id, map[string]string{"name": "web", "image": "busybox", "tier": "front"})
	b.Publish(events.ContainerEventType, events.ActionStart, id, map[string]string{"name": "web", "image": "busybox", "tier": "front"})
	b.Publish(events.ContainerEventType, "exec_start: sh -c true", id, map[string]string{"name": "web", "execID": "e1"})
	b.Publish(events.ImageEventType, events.ActionTag, "sha256:aa", map[string]string{"name": "busybox:latest"})
	b.Publish(events.VolumeEventType, events.ActionCreate, "data", map[string]string{"driver": "local"})
	all, sub := b.Subscribe(time.Unix(0, 1), Filter{})
	sub.Close()
	if len(all) != 5 {
		t.Fatalf("%d events kept, want 5", len(all))
	}
	cases := []struct {
		args []filters.KeyValuePair
		want []events.Action
	}{
		{[]filters.KeyValuePair{filters.Arg("type", "container"), filters.Arg("event", "start")}, []events.Action{"start"}},
		{[]filters.KeyValuePair{filters.Arg("type", "container")}, []events.Action{"create", "start", "exec_start: sh -c true"}},
		{[]filters.KeyValuePair{filters.Arg("event", "exec_start")}, []events.Action{"exec_start: sh -c true"}},
		{[]filters.KeyValuePair{filters.Arg("container", "web"), filters.Arg("event", "create")}, []events.Action{"create"}},
		{[]filters.KeyValuePair{filters.Arg("container", id[:12]), filters.Arg("event", "start")}, []events.Action{"start"}},
		{[]filters.KeyValuePair{filters.Arg("container", "other")}, nil},
		{[]filters.KeyValuePair{filters.Arg("image", "busybox"), filters.Arg("type", "container"), filters.Arg("event", "start")}, []events.Action{"start"}},
		{[]filters.KeyValuePair{filters.Arg("image", "busybox:latest"), filters.Arg("type", "image")}, []events.Action{"tag"}},
		{[]filters.KeyValuePair{filters.Arg("label", "tier=front")}, []events.Action{"create", "start"}},
		{[]filters.KeyValuePair{filters.Arg("label", "tier=back")}, nil},
		{[]filters.KeyValuePair{filters.Arg("volume", "data")}, []events.Action{"create"}},
		{[]filters.KeyValuePair{filters.Arg("type", "image"), filters.Arg("type", "volume")}, []events.Action{"tag", "create"}},
	}
	for _, c := range cases {
		f := NewFilter(filters.NewArgs(c.args...))
		var got []events.Action
		for _, m := range all {
			if f.match(m) {
				got = append(got, m.Action)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("filters %v: got %v, want %v", c.args, got, c.want)
		}
	}
}

// TestStream: a subscriber gets what is published after ready, filtered,
// and the stream ends at until.
func TestStream(t *testing.T) {
	b := New(0)
	f := NewFilter(filters.NewArgs(filters.Arg("event", "die")))
	got := make(chan events.Message, 10)
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Stream(context.Background(), time.Time{}, time.Now().Add(2*time.Second), f, func() { close(ready) }, func(m events.Message) error {
			got <- m
			return nil
		})
	}()
	<-ready
	b.Publish(events.ContainerEventType, events.ActionStart, "c1", nil)
	b.Publish(events.ContainerEventType, events.ActionDie, "c1", map[string]string{"exitCode": "0"})
	m := <-got
	if m.Action != events.ActionDie || m.Actor.Attributes["exitCode"] != "0" || m.ID != "c1" || m.Status != "die" || m.Scope != "local" {
		t.Fatalf("got %+v, want c1's die", m)
	}
	if err := <-done; err != nil {
		t.Fatalf("stream ended with %v at until", err)
	}
	if len(got) != 0 {
		t.Fatalf("more events than the die: %+v", <-got)
	}
}

// TestSlowSubscriberIsDropped: a client that stops reading loses its
// stream; publishing never blocks.
func TestSlowSubscriberIsDropped(t *testing.T) {
	b := New(0)
	_, sub := b.Subscribe(time.Time{}, Filter{})
	for i := range subscriberBuffer + 10 {
		b.Publish(events.ContainerEventType, events.ActionStart, fmt.Sprint(i), nil)
	}
	n := 0
	for range sub.C() {
		n++
	}
	if n != subscriberBuffer {
		t.Fatalf("a dropped subscriber got %d events, want its buffer's %d and then the end", n, subscriberBuffer)
	}
	sub.Close()
}

// TestClose ends the streams in flight and any made later.
func TestClose(t *testing.T) {
	b := New(0)
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- b.Stream(context.Background(), time.Time{}, time.Time{}, Filter{}, func() { close(ready) }, func(events.Message) error { return nil })
	}()
	<-ready
	b.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a stream ended by Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the stream")
	}
	if err := b.Stream(context.Background(), time.Time{}, time.Time{}, Filter{}, func() {}, func(events.Message) error { return nil }); err != nil {
		t.Fatalf("a stream after Close: %v", err)
	}
	b.Publish(events.DaemonEventType, "shutdown", "d", nil) // still kept, nobody to send to
}
