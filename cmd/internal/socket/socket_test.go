package socket

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func TestListen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode: %v %v, want 0660", fi.Mode(), err)
	}
	if _, err := Listen(path); !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Fatalf("a live server's socket: %v, want ErrAlreadyExists", err)
	}
	// A killed server leaves its socket: taken over.
	l.SetUnlinkOnClose(false)
	l.Close()
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("a dead server's socket: %v", err)
	}
	l.Close()
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("a regular file: %v, want ErrInvalidArgument", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep" {
		t.Fatal("the regular file was touched")
	}
}
