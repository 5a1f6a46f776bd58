package storage

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commit. Each bbolt commit is durable at the price of two fsyncs,
// which is most of what a Prepare or a Remove costs, and while one commit
// waits on the disk other callers can only wait behind it. So the Updates
// that arrive while a commit is under way are run together in the next
// one: one commit, two fsyncs, for all of them. A caller that finds no
// commit under way commits at once, alone, so it waits no longer than it
// would on bbolt's own Update. (bbolt's Batch waits MaxBatchDelay for
// company first, which a lone caller would pay every time.)

// errLead tells a queued caller that it now commits for the queue.
var errLead = errors.New("lead the next group commit")

type group struct {
	mu      sync.Mutex
	queue   []*request
	running bool // a caller is committing for the queue
	commits int  // transactions committed or tried (tests read it)
}

type request struct {
	fn   func(*bolt.Tx) error
	done chan error // the request's result, or errLead
}

// update runs fn in a durable transaction, perhaps with other callers'.
func (g *group) update(db *bolt.DB, fn func(*bolt.Tx) error) error {
	r := &request{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, r)
	lead := !g.running
	g.running = true
	g.mu.Unlock()
	if !lead {
		if err := <-r.done; !errors.Is(err, errLead) {
			return err
		}
	}
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.commitBatch(db, batch)
	// Hand the queue that formed meanwhile to its oldest caller, so no
	// caller commits for others for longer than one commit.
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead
	} else {
		g.running = false
	}
	g.mu.Unlock()
	return <-r.done
}

// commitBatch runs the batch in one transaction and tells each request its
// result. A request whose fn fails is run again alone (its failure may
// come from an earlier request of the batch), and the rest again without
// it: every caller sees the result of some serial order of the calls.
func (g *group) commitBatch(db *bolt.DB, batch []*request) {
	for len(batch) > 0 {
		failed := -1
		g.count()
		err := db.Update(func(tx *bolt.Tx) error {
			for i, r := range batch {
				if err := r.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if err == nil || failed < 0 || len(batch) == 1 {
			// Done, or the commit itself failed, or a lone request failed:
			// the result is everyone's.
			for _, r := range batch {
				r.done <- err
			}
			return
		}
		r := batch[failed]
		g.count()
		r.done <- db.Update(r.fn)
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

func (g *group) count() {
	g.mu.Lock()
	g.commits++
	g.mu.Unlock()
}

// Group is group commit for any bbolt file (layerlabd's container records
// use it); the zero value is ready, and it must not be copied.
type Group struct{ g group }

// Update runs fn in a durable transaction of db, perhaps together with
// other callers' fns: fn may run more than once, so it must have no effect
// outside tx.
func (g *Group) Update(db *bolt.DB, fn func(*bolt.Tx) error) error { return g.g.update(db, fn) }
