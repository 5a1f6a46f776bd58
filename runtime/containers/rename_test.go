package containers_test

import (
	"errors"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
)

// TestRename moves a name in the index: the old name is free and the new
// one finds the container; conflicts, invalid, empty and unchanged names
// are refused with dockerd's classes.
func TestRename(t *testing.T) {
	s := newStore(t)
	a := &containers.Record{ID: containers.NewID(), Name: "aa"}
	b := &containers.Record{ID: containers.NewID(), Name: "bb"}
	for _, r := range []*containers.Record{a, b} {
		if err := s.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Rename("aa", "/cc"); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Get("cc"); err != nil || r.ID != a.ID || r.Name != "cc" {
		t.Fatalf("get cc: %+v, %v", r, err)
	}
	if _, err := s.Get("aa"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("old name still found: %v", err)
	}
	if err := s.Add(&containers.Record{ID: containers.NewID(), Name: "aa"}); err != nil {
		t.Fatalf("the old name is not free: %v", err)
	}
	for name, want := range map[string]error{"bb": drivers.ErrAlreadyExists, "cc": drivers.ErrInvalidArgument,
		"": drivers.ErrInvalidArgument, "bad name!": drivers.ErrInvalidArgument} {
		if err := s.Rename(a.ID, name); !errors.Is(err, want) {
			t.Errorf("rename to %q: %v, want %v", name, err, want)
		}
	}
	if err := s.Rename("nosuch", "dd"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("rename of a missing container: %v", err)
	}
}
