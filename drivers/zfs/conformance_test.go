package zfs

import (
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

func TestConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{
		Factory: Factory(),
		Fixtures: []drivertest.Fixture{{Name: "zfs-fuse", Dir: func(t *testing.T) string {
			return loopfs.ForTestZFS(t, 0).Dir
		}}},
	})
}
