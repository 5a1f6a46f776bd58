package overlay

import (
	"testing"

	"github.com/layerlab/layerlab/drivers/drivertest"
)

// Both drivers run containerd's suite as "overlayfs": overlay refuses to
// rename a directory that lives in a lower layer unless redirect_dir is on,
// which it is not by default (and dockerd turns it off).
func TestOverlay2Conformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: Overlay2Factory(), FSTypes: []string{"ext4", "xfs"}, ContainerdName: "overlayfs"})
}

func TestOverlayConformance(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{Factory: OverlayFactory(), FSTypes: []string{"ext4", "xfs"}, ContainerdName: "overlayfs"})
}
