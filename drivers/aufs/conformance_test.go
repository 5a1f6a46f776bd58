package aufs

import (
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
)

// On a kernel without aufs (every mainline one) this skips with the
// probe's reason; it is meant to run in the aufs Vagrant VM.
func TestAufsConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: Factory(), FSTypes: []string{"ext4", "xfs"}})
}
