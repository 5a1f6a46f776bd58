package storage

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	var base, child Snapshot
	err := s.Update(ctx, func(tx *Tx) (err error) {
		if base, err = tx.Create("a", "", drivers.KindActive, drivers.WithLabels(map[string]string{"l": "1"})); err != nil {
			return err
		}
		if _, err = tx.Commit("a", "base", drivers.Usage{Size: 10, Inodes: 2}); err != nil {
			return err
		}
		child, err = tx.Create("c", "base", drivers.KindView)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(child.ParentIDs) != 1 || child.ParentIDs[0] != base.ID || child.ID == base.ID {
		t.Fatalf("child %+v of base %+v", child, base)
	}
	err = s.View(ctx, func(tx *Tx) error {
		info, err := tx.Info("base")
		if err != nil {
			return err
		}
		if info.Kind != drivers.KindCommitted || info.Labels["l"] != "1" || !info.Created.Equal(info.Updated) {
			t.Errorf("base info %+v", info)
		}
		u, committed, err := tx.CommittedUsage("base")
		if err != nil || !committed || u.Size != 10 || u.Inodes != 2 {
			t.Errorf("committed usage %+v %v %v", u, committed, err)
		}
		if _, err := tx.Info("a"); !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("the active key survived its commit: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		_, _, err := tx.Remove("base")
		return err
	})
	if !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("remove a parent: %v", err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		if _, _, err := tx.Remove("c"); err != nil {
			return err
		}
		_, _, err := tx.Remove("base")
		return err
	})
	if err != nil {
		t.Fatalf("remove child then parent: %v", err)
	}
}

// A transaction that fails half-way leaves nothing of itself behind, also
// across a reopen: the old state or the new, never half.
func TestFailedTransactionLeavesOldState(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path)
	if err := s.Update(ctx, func(tx *Tx) error {
		_, err := tx.Create("kept", "", drivers.KindActive)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("storage step failed")
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := tx.Commit("kept", "committed", drivers.Usage{}); err != nil {
			return err
		}
		if _, err := tx.Create("half", "committed", drivers.KindActive); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	var names []string
	var ids map[string]bool
	s.View(ctx, func(tx *Tx) (err error) {
		tx.Walk(func(i drivers.Info) error { names = append(names, i.Name+"/"+i.Kind.String()); return nil })
		ids, err = tx.IDs()
		return err
	})
	if len(names) != 1 || names[0] != "kept/active" || len(ids) != 1 {
		t.Fatalf("after a failed transaction and a reopen: %v, ids %v", names, ids)
	}
}

func TestUpdateLabels(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	var info drivers.Info
	err := s.Update(ctx, func(tx *Tx) (err error) {
		if _, err = tx.Create("k", "", drivers.KindActive, drivers.WithLabels(map[string]string{"a": "1", "b": "2"})); err != nil {
			return err
		}
		if info, err = tx.Update(drivers.Info{Name: "k", Labels: map[string]string{"a": "x", "c": "3"}}, "labels.a", "labels.b"); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Labels) != 1 || info.Labels["a"] != "x" {
		t.Fatalf("labels.a set and labels.b cleared: got %v", info.Labels)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		_, err := tx.Update(drivers.Info{Name: "k", Parent: "p"}, "parent")
		return err
	})
	if !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("update parent: %v", err)
	}
}

func TestBadKeys(t *testing.T) {
	for _, k := range []string{"", "a\x00b", string(make([]byte, MaxKeyLen+1))} {
		if err := ValidKey("key", k); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("key of %d bytes: %v", len(k), err)
		}
	}
	if err := ValidKey("key", "/any/path-like key"); err != nil {
		t.Errorf("path-like keys are allowed (containerd uses them): %v", err)
	}
}

// Project ids are handed out lowest-free and come back on Remove.
func TestProjectsAreReleased(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	assign := func(key string) uint32 {
		var id uint32
		err := s.Update(ctx, func(tx *Tx) (err error) {
			if _, err = tx.Create(key, "", drivers.KindActive); err != nil {
				return err
			}
			id, err = tx.AssignProject(key, 1000)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	if a, b := assign("a"), assign("b"); a != 1000 || b != 1001 {
		t.Fatalf("got %d %d", a, b)
	}
	s.Update(ctx, func(tx *Tx) error { _, _, err := tx.Remove("a"); return err })
	if c := assign("c"); c != 1000 {
		t.Fatalf("released id not reused: %d", c)
	}
	var snap Snapshot
	s.Update(ctx, func(tx *Tx) (err error) {
		if _, err = tx.Commit("b", "bc", drivers.Usage{}); err != nil {
			return err
		}
		snap, err = tx.Get("bc")
		return err
	})
	if snap.Project != 1001 {
		t.Fatalf("commit dropped the project id: %+v", snap)
	}
}
