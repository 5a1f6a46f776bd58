package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// Updates that arrive while a commit is under way share the next one, and
// each still gets its own result: 21 inserts queued behind a held commit
// share commits; of a duplicate key among them exactly one fails, and the
// others land.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	hold := make(chan struct{})
	var ids sync.Mutex
	next := 0
	insertIn := func(tx *Tx, key string) error {
		sn, err := tx.Plan(key, "", drivers.KindActive)
		if err != nil {
			return err
		}
		ids.Lock()
		next++
		sn.ID = fmt.Sprint(next)
		ids.Unlock()
		return tx.Insert(key, sn)
	}
	insert := func(key string) error {
		return s.Update(ctx, func(tx *Tx) error { return insertIn(tx, key) })
	}
	var first error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		first = s.Update(ctx, func(tx *Tx) error {
			<-hold
			return insertIn(tx, "first")
		})
	}()
	waitFor(t, func() bool {
		s.group.mu.Lock()
		defer s.group.mu.Unlock()
		return s.group.running && len(s.group.queue) == 0
	})
	errs := make([]error, 21)
	keys := make([]string, 21)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	keys[20] = "k07" // the same key twice: one of the two must fail
	for i, k := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = insert(k) }()
	}
	waitFor(t, func() bool { s.group.mu.Lock(); defer s.group.mu.Unlock(); return len(s.group.queue) == 21 })
	close(hold)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
	dup := 0
	for i, err := range errs {
		switch {
		case errors.Is(err, drivers.ErrAlreadyExists) && keys[i] == "k07":
			dup++
		case err != nil:
			t.Errorf("insert %s: %v", keys[i], err)
		}
	}
	if dup != 1 {
		t.Errorf("%d of the two inserts of k07 failed, want 1", dup)
	}
	// The held one; the 21 together, which fail at the later k07; that
	// k07 alone (it lands: the group was undone); the other 20 again,
	// which fail at the earlier k07 now; that one alone (it fails); the
	// other 19 again. Six commits for 22 calls.
	if s.group.commits != 6 {
		t.Errorf("%d commits, want 6", s.group.commits)
	}
	err := s.View(ctx, func(tx *Tx) error {
		for _, k := range append(keys[:20], "first") {
			if _, err := tx.Get(k); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
