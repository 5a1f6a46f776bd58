package devicemapper

import (
	"os"
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// fixtureSize is the loop filesystem the homes, and so the pools' sparse
// files, live on. Mounted with discard, so that the pool files a test
// deletes give their space back to the tmpfs under the image.
const fixtureSize = 2 << 30

// homeOnExt4 gives the suites a directory on a fresh ext4 loop filesystem,
// or skips, with the probe's reason, where dm-thin is missing (before
// making a filesystem for nothing).
func homeOnExt4(t *testing.T) string {
	if p := Probe(os.TempDir()); !p.Available() {
		feature.Skip(t, feature.DeviceMapper, "%s: %s", Name, p.Reason)
	}
	return loopfs.ForTestWith(t, "ext4", fixtureSize, "discard").Dir
}

// TestConformance drives real dm-thin: each driver home gets its own pool
// on sparse files, with loop devices that go when the pool does.
func TestConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{
		Factory:  Factory(),
		Fixtures: []drivertest.Fixture{{Name: "ext4-home", Dir: homeOnExt4}},
	})
}
