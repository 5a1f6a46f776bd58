package aufs

import (
	"os"
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
)

// TestMain leaves out containerd's 128LayersMount where the running aufs
// unites fewer than 128 branches (drivertest.Main); drivertest's Chain128
// check asserts the refusal instead.
func TestMain(m *testing.M) { os.Exit(drivertest.Main(m, Factory())) }

// On a kernel without aufs (every mainline one) this skips with the
// probe's reason; it is meant to run in the aufs Vagrant VM.
func TestAufsConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: Factory(), FSTypes: []string{"ext4", "xfs"}})
}
