package core

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/layerlab/layerlab/drivers"
)

// keyLocks are read-write locks per snapshot key, so that operations on
// different keys run in parallel while two on one key (or a Remove of a
// parent a Prepare is copying) wait for each other. Entries live only
// while someone holds or waits for them.
type keyLocks struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

type keyLock struct {
	sync.RWMutex
	refs int
}

// lock takes the write locks of writes and the read locks of reads, in
// key order so that two callers never wait for each other in a cycle, and
// returns the function that releases them all. Empty keys are ignored; a
// key in both lists is locked for writing.
func (l *keyLocks) lock(writes []string, reads ...string) (unlock func()) {
	mode := map[string]bool{} // true: write
	for _, k := range reads {
		if k != "" {
			mode[k] = false
		}
	}
	for _, k := range writes {
		if k != "" {
			mode[k] = true
		}
	}
	keys := make([]string, 0, len(mode))
	for k := range mode {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	held := make([]func(), 0, len(keys))
	for _, k := range keys {
		e := l.ref(k)
		if mode[k] {
			e.Lock()
			held = append(held, func() { e.Unlock(); l.unref(k) })
		} else {
			e.RLock()
			held = append(held, func() { e.RUnlock(); l.unref(k) })
		}
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
	}
}

func (l *keyLocks) ref(key string) *keyLock {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.locks == nil {
		l.locks = map[string]*keyLock{}
	}
	e := l.locks[key]
	if e == nil {
		e = &keyLock{}
		l.locks[key] = e
	}
	e.refs++
	return e
}

func (l *keyLocks) unref(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.locks[key]; e != nil {
		if e.refs--; e.refs == 0 {
			delete(l.locks, key)
		}
	}
}

// size is the number of keys with a live entry (for tests: it must drop
// back to zero).
func (l *keyLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.locks)
}

// hookKey carries a step hook in a context.
type hookKey struct{}

// WithHook returns a context under which the driver calls hook at each
// named step of Prepare, View, Commit and Remove (and backends at steps of
// their own, through Step). Crash tests use it to kill a process at step
// N; tracing can use it to time the phases of an operation.
func WithHook(ctx context.Context, hook func(step string)) context.Context {
	return context.WithValue(ctx, hookKey{}, hook)
}

// Step calls the hook of ctx, if it has one, with step.
func Step(ctx context.Context, step string) {
	if hook, ok := ctx.Value(hookKey{}).(func(string)); ok {
		hook(step)
	}
}

// projects hands out quota project ids: the lowest at or above base that
// no snapshot holds or is being made with. They are recorded with the
// snapshot (storage.Tx.Insert) and released by Remove.
type projects struct {
	base uint32
	mu   sync.Mutex
	held map[uint32]bool
}

func (p *projects) take() (uint32, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = map[uint32]bool{}
	}
	for id := p.base; id != 0; id++ {
		if !p.held[id] {
			p.held[id] = true
			return id, nil
		}
	}
	return 0, fmt.Errorf("no free quota project id at or above %d: %w", p.base, drivers.ErrUnavailable)
}

func (p *projects) release(id uint32) {
	if id == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.held, id)
}
