package storage

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
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
		if base, err = create(tx, "a", "", drivers.KindActive, drivers.WithLabels(map[string]string{"l": "1"})); err != nil {
			return err
		}
		if _, err = commit(tx, "a", "base", drivers.Usage{Size: 10, Inodes: 2}); err != nil {
			return err
		}
		child, err = create(tx, "c", "base", drivers.KindView)
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
		_, err := create(tx, "kept", "", drivers.KindActive)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("storage step failed")
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := commit(tx, "kept", "committed", drivers.Usage{}); err != nil {
			return err
		}
		if _, err := create(tx, "half", "committed", drivers.KindActive); err != nil {
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
		tx.Walk(nil, func(i drivers.Info) error { names = append(names, i.Name+"/"+i.Kind.String()); return nil })
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
		if _, err = create(tx, "k", "", drivers.KindActive, drivers.WithLabels(map[string]string{"a": "1", "b": "2"})); err != nil {
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

// create plans and inserts key with the next id, as core does with its
// storage made in between.
func create(tx *Tx, key, parent string, kind drivers.Kind, opts ...drivers.Opt) (Snapshot, error) {
	return createWith(tx, key, parent, kind, 0, opts...)
}

func createWith(tx *Tx, key, parent string, kind drivers.Kind, project uint32, opts ...drivers.Opt) (Snapshot, error) {
	s, err := tx.Plan(key, parent, kind, opts...)
	if err != nil {
		return s, err
	}
	s.ID, s.Project = strconv.FormatUint(tx.LastID()+1, 10), project
	return s, tx.Insert(key, s)
}

// commit runs both steps of a commit in one transaction.
func commit(tx *Tx, key, name string, u drivers.Usage, opts ...drivers.Opt) (string, error) {
	if _, err := tx.BeginCommit(key, name, opts...); err != nil {
		return "", err
	}
	return tx.FinishCommit(key, u)
}

// Project ids are recorded with their snapshot, kept by a commit and
// released by Remove; two snapshots cannot hold one.
func TestProjectsAreRecordedAndReleased(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	held := func() map[uint32]bool {
		var h map[uint32]bool
		s.View(ctx, func(tx *Tx) error { h = tx.Projects(); return nil })
		return h
	}
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := createWith(tx, "a", "", drivers.KindActive, 1000); err != nil {
			return err
		}
		_, err := createWith(tx, "b", "", drivers.KindActive, 1001)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := held(); !h[1000] || !h[1001] || len(h) != 2 {
		t.Fatalf("held %v", h)
	}
	err = s.Update(ctx, func(tx *Tx) error { _, err := createWith(tx, "c", "", drivers.KindActive, 1000); return err })
	if !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Fatalf("a second holder of project 1000: %v", err)
	}
	s.Update(ctx, func(tx *Tx) error { _, _, err := tx.Remove("a"); return err })
	if h := held(); h[1000] {
		t.Fatalf("Remove kept project 1000: %v", h)
	}
	var snap Snapshot
	s.Update(ctx, func(tx *Tx) (err error) {
		if _, err = commit(tx, "b", "bc", drivers.Usage{}); err != nil {
			return err
		}
		snap, err = tx.Get("bc")
		return err
	})
	if snap.Project != 1001 || !held()[1001] {
		t.Fatalf("commit dropped the project id: %+v", snap)
	}
}

// A commit begun and not finished survives a reopen, shows the snapshot
// as still active, blocks Remove and a second commit, and can be taken
// back or finished with the labels asked for at its start.
func TestCommitInTwoSteps(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	s := open(t, path)
	err := s.Update(ctx, func(tx *Tx) error {
		if _, err := create(tx, "k", "", drivers.KindActive, drivers.WithLabels(map[string]string{"a": "1"})); err != nil {
			return err
		}
		_, err := tx.BeginCommit("k", "n", drivers.WithLabels(map[string]string{"b": "2"}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	err = s.Update(ctx, func(tx *Tx) error {
		pending, err := tx.Committing()
		if err != nil || len(pending) != 1 || pending["k"] != "n" {
			t.Errorf("pending %v, %v", pending, err)
		}
		if info, err := tx.Info("k"); err != nil || info.Kind != drivers.KindActive {
			t.Errorf("k while committing: %+v %v", info, err)
		}
		if _, _, err := tx.Remove("k"); !errors.Is(err, drivers.ErrFailedPrecondition) {
			t.Errorf("Remove while committing: %v", err)
		}
		if _, err := tx.BeginCommit("k", "m"); !errors.Is(err, drivers.ErrFailedPrecondition) {
			t.Errorf("second BeginCommit: %v", err)
		}
		if err := tx.AbortCommit("k"); err != nil {
			return err
		}
		if pending, _ := tx.Committing(); len(pending) != 0 {
			t.Errorf("after AbortCommit: %v", pending)
		}
		if _, err := tx.FinishCommit("k", drivers.Usage{}); !errors.Is(err, drivers.ErrFailedPrecondition) {
			t.Errorf("FinishCommit without BeginCommit: %v", err)
		}
		if _, err := commit(tx, "k", "n", drivers.Usage{Size: 1}, drivers.WithLabels(map[string]string{"b": "2"})); err != nil {
			return err
		}
		info, err := tx.Info("n")
		if err != nil || info.Labels["a"] != "1" || info.Labels["b"] != "2" || info.Kind != drivers.KindCommitted {
			t.Errorf("committed %+v %v", info, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Insert checks again what Plan checked: the parent may have gone while
// the storage was made.
func TestInsertRechecks(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	var plan Snapshot
	err := s.Update(ctx, func(tx *Tx) (err error) {
		if _, err = create(tx, "p", "", drivers.KindActive); err != nil {
			return err
		}
		if _, err = commit(tx, "p", "parent", drivers.Usage{}); err != nil {
			return err
		}
		plan, err = tx.Plan("child", "parent", drivers.KindActive)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	plan.ID = "99"
	s.Update(ctx, func(tx *Tx) error { _, _, err := tx.Remove("parent"); return err })
	err = s.Update(ctx, func(tx *Tx) error { return tx.Insert("child", plan) })
	if !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("insert under a removed parent: %v", err)
	}
	plan.Parent, plan.ParentIDs, plan.ID = "", nil, "x"
	err = s.Update(ctx, func(tx *Tx) error { return tx.Insert("child", plan) })
	if !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("insert with a non-numeric id: %v", err)
	}
	plan.ID = "99"
	if err := s.Update(ctx, func(tx *Tx) error { return tx.Insert("child", plan) }); err != nil {
		t.Fatal(err)
	}
	s.View(ctx, func(tx *Tx) error {
		if tx.LastID() != 99 {
			t.Errorf("LastID %d after inserting id 99", tx.LastID())
		}
		return nil
	})
}

// Labels are bounded like containerd's, and layerlab's own are set only
// at creation.
func TestLabelRules(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	big := strings.Repeat("v", MaxLabelLen)
	for _, labels := range []map[string]string{{"k": big}, {"": "v"}, {"layerlab.io/other": "1"}} {
		err := s.Update(ctx, func(tx *Tx) error {
			_, err := create(tx, "x", "", drivers.KindActive, drivers.WithLabels(labels))
			return err
		})
		if !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("labels %.40v: %v", labels, err)
		}
	}
	err := s.Update(ctx, func(tx *Tx) error {
		_, err := create(tx, "x", "", drivers.KindActive, drivers.WithSize(1<<20), drivers.WithLabels(map[string]string{"own": "1"}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	update := func(info drivers.Info, paths ...string) (out drivers.Info, err error) {
		err = s.Update(ctx, func(tx *Tx) error { out, err = tx.Update(info, paths...); return err })
		return out, err
	}
	if _, err := update(drivers.Info{Name: "x", Labels: map[string]string{drivers.LabelSize: "1"}}, "labels."+drivers.LabelSize); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("changing %s by field path: %v", drivers.LabelSize, err)
	}
	if _, err := update(drivers.Info{Name: "x", Labels: map[string]string{drivers.LabelSize: "5"}}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("changing %s in a replacement: %v", drivers.LabelSize, err)
	}
	out, err := update(drivers.Info{Name: "x", Labels: map[string]string{"new": "2"}})
	if err != nil || out.Labels["new"] != "2" || out.Labels["own"] != "" || out.Labels[drivers.LabelSize] != "1048576" {
		t.Errorf("replacement: %+v %v (want new=2, own gone, the size label kept)", out.Labels, err)
	}
	if _, err := update(drivers.Info{Name: "x", Labels: map[string]string{"k": big}}, "labels.k"); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("oversized label by update: %v", err)
	}
}

// Walk applies filters in the store; a name filter is a lookup.
func TestWalkFilters(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "m.db"))
	err := s.Update(ctx, func(tx *Tx) error {
		for _, step := range []func() error{
			func() error { _, err := create(tx, "a", "", drivers.KindActive); return err },
			func() error { _, err := commit(tx, "a", "base", drivers.Usage{}); return err },
			func() error {
				_, err := create(tx, "v", "base", drivers.KindView, drivers.WithLabels(map[string]string{"role": "x"}))
				return err
			},
			func() error { _, err := create(tx, "w", "base", drivers.KindActive); return err },
			func() error { _, err := create(tx, "z", "", drivers.KindActive); return err },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		filters []drivers.Filter
		want    string
	}{
		{nil, "a? base v w z"},
		{[]drivers.Filter{{Kind: drivers.KindActive}}, "w z"},
		{[]drivers.Filter{{Parent: "base"}}, "v w"},
		{[]drivers.Filter{{Base: true}}, "base z"},
		{[]drivers.Filter{{Labels: map[string]string{"role": "x"}}}, "v"},
		{[]drivers.Filter{{Name: "w"}}, "w"},
		{[]drivers.Filter{{Name: "missing"}}, ""},
		{[]drivers.Filter{{Kind: drivers.KindView}, {Base: true, Kind: drivers.KindActive}}, "v z"},
		{[]drivers.Filter{{Parent: "base", Kind: drivers.KindCommitted}}, ""},
	} {
		var got []string
		err := s.View(ctx, func(tx *Tx) error {
			return tx.Walk(c.filters, func(i drivers.Info) error { got = append(got, i.Name); return nil })
		})
		want := strings.ReplaceAll(c.want, "a? ", "")
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("filters %+v: got %q, %v; want %q", c.filters, got, err, want)
		}
	}
}
