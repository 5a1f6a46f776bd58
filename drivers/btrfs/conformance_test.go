package btrfs

import (
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
)

// containerd's suite runs under the name "btrfs", so it also renames
// directories that live in a lower layer, which a subvolume snapshot
// allows like any directory of its own.
func TestConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: Factory(), FSTypes: []string{"btrfs"}})
}
