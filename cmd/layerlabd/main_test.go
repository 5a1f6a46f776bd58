package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
)

func TestSocketPaths(t *testing.T) {
	got, err := socketPaths([]string{"unix:///run/a.sock", "unix:///tmp/b.sock"})
	if err != nil || len(got) != 2 || got[0] != "/run/a.sock" || got[1] != "/tmp/b.sock" {
		t.Fatalf("socketPaths: %v %v", got, err)
	}
	_, err = socketPaths([]string{"tcp://127.0.0.1:2375"})
	if !errors.Is(err, drivers.ErrNotImplemented) || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("tcp://: %v, want not implemented, saying it comes with TLS", err)
	}
	for _, h := range []string{"unix://relative.sock", "/run/a.sock", "fd://"} {
		if _, err := socketPaths([]string{h}); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", h, err)
		}
	}
}

func TestStorageOptions(t *testing.T) {
	reg := builtin.Registry()
	got, err := storageOptions(reg, []string{"overlay2.volatile=true", "btrfs.home=/mnt/btrfs"})
	if err != nil || got["overlay2"]["volatile"] != "true" || got["btrfs"]["home"] != "/mnt/btrfs" {
		t.Fatalf("storageOptions: %v %v", got, err)
	}
	for _, bad := range []string{"size=10G", "overlay2.nosuch=1", "nosuch.size=1", "overlay2.size"} {
		if _, err := storageOptions(reg, []string{bad}); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("--storage-opt %s: %v, want invalid argument", bad, err)
		}
	}
}
