package main

import (
	"errors"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
)

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
