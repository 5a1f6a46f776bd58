package vfs

import (
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
)

func TestConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: Factory(), FSTypes: []string{"ext4", "xfs"}})
}
