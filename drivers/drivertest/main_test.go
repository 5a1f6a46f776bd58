package drivertest

import (
	"os"
	"sync"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// TestMain runs this package's tests as a shallow driver's package would
// (see Main), so that TestMainLeavesOut128LayersMount sees the real
// -test.skip matching.
func TestMain(m *testing.M) {
	os.Exit(Main(m, drivers.Factory{Name: "shallow", Capabilities: drivers.Capabilities{MaxDepth: 127}}))
}

// Main leaves out containerd's 128LayersMount, named as Conformance and
// containerd's suite name it, and nothing else.
func TestMainLeavesOut128LayersMount(t *testing.T) {
	var mu sync.Mutex
	ran := map[string]bool{}
	for _, fixture := range []string{"ext4", "xfs-prjquota"} {
		t.Run(fixture, func(t *testing.T) {
			for _, suite := range []string{"containerd", "layerlab"} {
				t.Run(suite, func(t *testing.T) {
					for _, name := range []string{"Basic", "128LayersMount", "Chain128"} {
						t.Run(name, func(t *testing.T) {
							mu.Lock()
							defer mu.Unlock()
							ran[t.Name()] = true
						})
					}
				})
			}
		})
	}
	for _, fixture := range []string{"ext4", "xfs-prjquota"} {
		prefix := t.Name() + "/" + fixture + "/"
		if ran[prefix+"containerd/128LayersMount"] {
			t.Errorf("%s ran", prefix+"containerd/128LayersMount")
		}
		for _, name := range []string{"containerd/Basic", "layerlab/128LayersMount", "layerlab/Chain128"} {
			if !ran[prefix+name] {
				t.Errorf("%s did not run", prefix+name)
			}
		}
	}
	if !shallow(drivers.Factory{Capabilities: drivers.Capabilities{MaxDepth: 127}}) || shallow(drivers.Factory{}) || shallow(drivers.Factory{Capabilities: drivers.Capabilities{MaxDepth: 128}}) {
		t.Error("shallow: want only 0 < MaxDepth < 128")
	}
}
