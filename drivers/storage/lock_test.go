package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// A store held by another opener (here this process, through a second
// open file, which flock treats as another holder) is refused after the
// wait with ErrUnavailable, naming the holder's pid.
func TestOpenHeldStoreNamesTheHolder(t *testing.T) {
	t.Parallel() // it waits out Open's 5 s
	path := filepath.Join(t.TempDir(), "metadata.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path)
	if !errors.Is(err, drivers.ErrUnavailable) {
		t.Fatalf("second open: %v, want ErrUnavailable", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "another home") {
		t.Fatalf("second open: %q, want it to name %s and say what to do", err, want)
	}
	t.Log(err)
}
