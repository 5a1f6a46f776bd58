package containers_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
)

func newStore(t *testing.T) *containers.Store {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := containers.New(db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNamesAndLookup(t *testing.T) {
	s := newStore(t)
	web := &containers.Record{ID: containers.NewID(), Name: "web"}
	if err := s.Add(web); err != nil {
		t.Fatal(err)
	}
	anon := &containers.Record{ID: containers.NewID()}
	if err := s.Add(anon); err != nil || anon.Name == "" || !strings.Contains(anon.Name, "_") {
		t.Fatalf("generated name %q: %v", anon.Name, err)
	}
	err := s.Add(&containers.Record{ID: containers.NewID(), Name: "/web"})
	if !errors.Is(err, containers.ErrNameConflict) || !errors.Is(err, drivers.ErrAlreadyExists) || !strings.Contains(err.Error(), web.ID) {
		t.Fatalf("duplicate name: %v", err)
	}
	if err := s.Add(&containers.Record{ID: containers.NewID(), Name: "bad name"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("bad name: %v", err)
	}
	for _, ref := range []string{web.ID, "web", "/web", web.ID[:12]} {
		if r, err := s.Get(ref); err != nil || r.ID != web.ID || r.State.Status != containers.Created {
			t.Errorf("Get(%s): %+v %v", ref, r, err)
		}
	}
	if _, err := s.Get("nosuch"); !errors.Is(err, drivers.ErrNotFound) || err.Error() != "No such container: nosuch" {
		t.Errorf("Get(nosuch): %v", err)
	}
	if err := s.Delete("web"); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(&containers.Record{ID: containers.NewID(), Name: "web"}); err != nil {
		t.Fatalf("name not freed by Delete: %v", err)
	}
	if list, err := s.List(); err != nil || len(list) != 2 {
		t.Fatalf("List: %d %v", len(list), err)
	}
}

func TestTransitions(t *testing.T) {
	s := newStore(t)
	r := &containers.Record{ID: containers.NewID(), Name: "c1"}
	if err := s.Add(r); err != nil {
		t.Fatal(err)
	}
	set := func(status string) error {
		_, err := s.Update(r.ID, func(r *containers.Record) error { return r.SetState(containers.State{Status: status}) })
		return err
	}
	for _, st := range []string{containers.Running, containers.Paused, containers.Running, containers.Exited, containers.Running, containers.Exited} {
		if err := set(st); err != nil {
			t.Fatalf("-> %s: %v", st, err)
		}
	}
	if err := set(containers.Paused); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("exited -> paused: %v, want failed precondition", err)
	}
	if got, _ := s.Get(r.ID); got.State.Status != containers.Exited {
		t.Fatalf("a refused transition changed the state to %s", got.State.Status)
	}
}
