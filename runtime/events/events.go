// Package events is layerlabd's event bus: every state change of a
// container, image, volume or the daemon is published once, kept in a
// bounded in-memory ring (so `docker events --since` can replay the recent
// past, as dockerd's 256-event log does) and fanned out to the
// subscribers of GET /events, each through its own buffered channel so a
// slow client never blocks the daemon.
package events

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
)

// DefaultRing is how many events the bus keeps for replay when New is
// given no size; dockerd keeps 256.
const DefaultRing = 1024

// subscriberBuffer is how many events a subscriber may fall behind before
// the bus drops it (its stream ends; the client sees EOF and can resubscribe
// with --since).
const subscriberBuffer = 512

// Bus publishes events to the ring and the subscribers.
type Bus struct {
	mu     sync.Mutex
	ring   []events.Message // oldest first, at most size
	size   int
	subs   map[*Subscription]struct{}
	now    func() time.Time
	closed bool // Close ended every stream; new ones end at once
}

// New returns a bus that keeps the last size events (DefaultRing when
// size <= 0).
func New(size int) *Bus {
	if size <= 0 {
		size = DefaultRing
	}
	return &Bus{size: size, subs: map[*Subscription]struct{}{}, now: time.Now}
}

// Publish stamps an event of type typ with action on the actor id and its
// attributes and delivers it. It never blocks: a subscriber whose buffer
// is full is closed.
func (b *Bus) Publish(typ events.Type, action events.Action, id string, attrs map[string]string) {
	if b == nil {
		return
	}
	t := b.now()
	a := make(map[string]string, len(attrs))
	for k, v := range attrs {
		a[k] = v
	}
	m := events.Message{
		Type: typ, Action: action, Actor: events.Actor{ID: id, Attributes: a},
		Scope: "local", Time: t.Unix(), TimeNano: t.UnixNano(),
	}
	if typ == events.ContainerEventType {
		// The fields API < 1.22 clients read; the CLI still prints them.
		m.ID, m.Status, m.From = id, string(action), a["image"]
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.ring) == b.size {
		copy(b.ring, b.ring[1:])
		b.ring = b.ring[:b.size-1]
	}
	b.ring = append(b.ring, m)
	for s := range b.subs {
		if !s.filter.match(m) {
			continue
		}
		select {
		case s.c <- m:
		default:
			delete(b.subs, s)
			close(s.c)
		}
	}
}

// Subscription is one client's stream of events.
type Subscription struct {
	c      chan events.Message
	filter Filter
	bus    *Bus
	once   sync.Once
}

// C delivers the events after the replay; it is closed by Close or when
// the subscriber fell too far behind.
func (s *Subscription) C() <-chan events.Message { return s.c }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.bus.mu.Lock()
		defer s.bus.mu.Unlock()
		if _, ok := s.bus.subs[s]; ok {
			delete(s.bus.subs, s)
			close(s.c)
		}
	})
}

// Subscribe returns the kept events at or after since that f matches
// (none when since is zero) and a subscription to the events published
// from now on. Replay and subscription are taken under one lock, so no
// event is lost or seen twice between them.
func (b *Bus) Subscribe(since time.Time, f Filter) ([]events.Message, *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var replay []events.Message
	if !since.IsZero() {
		for _, m := range b.ring {
			if m.TimeNano >= since.UnixNano() && f.match(m) {
				replay = append(replay, m)
			}
		}
	}
	s := &Subscription{c: make(chan events.Message, subscriberBuffer), filter: f, bus: b}
	if b.closed {
		close(s.c)
		return replay, s
	}
	b.subs[s] = struct{}{}
	return replay, s
}

// Listeners is how many subscriptions are open (docker info's
// EventsListeners).
func (b *Bus) Listeners() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Close ends every subscription (their streams end after what they hold)
// and any made later: a daemon shutting down lets its event streams go,
// so the HTTP server's graceful stop does not wait on them. Publish still
// keeps events in the ring.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		delete(b.subs, s)
		close(s.c)
	}
}

// Stream subscribes, calls ready (nothing published from then on is
// missed), then writes the replay and every event until until (zero: no
// end), ctx is done or the subscription is dropped, through emit.
func (b *Bus) Stream(ctx context.Context, since, until time.Time, f Filter, ready func(), emit func(events.Message) error) error {
	replay, sub := b.Subscribe(since, f)
	defer sub.Close()
	ready()
	for _, m := range replay {
		if !until.IsZero() && m.TimeNano > until.UnixNano() {
			return nil
		}
		if err := emit(m); err != nil {
			return err
		}
	}
	var timeout <-chan time.Time
	if !until.IsZero() {
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timeout:
			return nil
		case m, ok := <-sub.C():
			if !ok {
				return nil
			}
			if err := emit(m); err != nil {
				return err
			}
		}
	}
}

// Filter is the filters of GET /events: type, event (action), container,
// image, volume, network, daemon, label (key or key=value on the actor's
// attributes). Within one key values are alternatives; keys combine.
type Filter struct{ args filters.Args }

// NewFilter wraps the request's filters; Validate them first.
func NewFilter(f filters.Args) Filter { return Filter{args: f} }

// ValidKeys are the filter keys /events accepts.
func ValidKeys() map[string]bool {
	return map[string]bool{
		"type": true, "event": true, "container": true, "image": true, "volume": true,
		"network": true, "daemon": true, "label": true, "scope": true,
	}
}

func (f Filter) match(m events.Message) bool {
	a := f.args
	if a.Len() == 0 {
		return true
	}
	if a.Contains("type") && !a.ExactMatch("type", string(m.Type)) {
		return false
	}
	if a.Contains("scope") && !a.ExactMatch("scope", m.Scope) {
		return false
	}
	if a.Contains("event") && !matchAction(a.Get("event"), m.Action) {
		return false
	}
	if a.Contains("label") && !a.MatchKVList("label", m.Actor.Attributes) {
		return false
	}
	name := m.Actor.Attributes["name"]
	for _, k := range []struct {
		key string
		typ events.Type
	}{
		{"container", events.ContainerEventType}, {"volume", events.VolumeEventType},
		{"network", events.NetworkEventType}, {"daemon", events.DaemonEventType},
	} {
		if !a.Contains(k.key) {
			continue
		}
		if m.Type != k.typ || !(a.ExactMatch(k.key, m.Actor.ID) || a.ExactMatch(k.key, name) || prefixOf(a.Get(k.key), m.Actor.ID)) {
			return false
		}
	}
	if a.Contains("image") {
		img := m.Actor.Attributes["image"]
		if m.Type == events.ImageEventType {
			img = m.Actor.ID
		}
		if !a.ExactMatch("image", img) && !a.ExactMatch("image", name) && !a.ExactMatch("image", strings.TrimSuffix(img, ":latest")) {
			return false
		}
	}
	return true
}

// matchAction matches "exec_start" against "exec_start: sh -c ..." as
// dockerd does: the action's words before a colon.
func matchAction(want []string, got events.Action) bool {
	base, _, _ := strings.Cut(string(got), ":")
	for _, w := range want {
		if w == string(got) || w == base {
			return true
		}
	}
	return false
}

// prefixOf reports whether one of the values is a prefix of a 64-character
// ID, as short IDs are given (at least 12 characters, like docker's).
func prefixOf(values []string, id string) bool {
	for _, v := range values {
		if len(v) >= 12 && strings.HasPrefix(id, v) {
			return true
		}
	}
	return false
}
