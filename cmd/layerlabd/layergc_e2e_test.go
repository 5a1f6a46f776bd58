package main

import (
	"strings"
	"testing"
)

// TestEndToEndLayersCollected checks that an image's layers leave the
// drivers with the image: `docker rmi` removes the layers it unpacked on
// overlay2 and vfs, and an image prune of a dangling image (what rmi -f
// leaves of an image a container uses) gives its layer's space back.
// The drivers' committed layers are what /system/df's LayersSize counts.
func TestEndToEndLayersCollected(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	client := apiClient(e.sock)
	layers := func() int64 {
		t.Helper()
		var du struct{ LayersSize int64 }
		if st := call(t, client, "GET", "/system/df", nil, &du); st != 200 {
			t.Fatalf("GET /system/df: %d", st)
		}
		return du.LayersSize
	}
	const mib = 1 << 20
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	// An image with an 8 MiB layer of its own.
	mk := func(ref string) {
		c.expect(0, "", "run", "--name", "mk", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=8")
		c.expect(0, "sha256:", "commit", "mk", ref)
		c.expect(0, "mk", "rm", "mk")
	}
	mk("big:1")
	// busybox's own layer on vfs too, so base counts it on both drivers.
	c.expect(0, "", "run", "--rm", "--storage-opt", "driver=vfs", "busybox", "true")
	base := layers()
	for _, drv := range []string{"overlay2", "vfs"} {
		c.expect(0, "", "run", "--rm", "--storage-opt", "driver="+drv, "big:1", "true")
	}
	if got := layers(); got < base+2*8*mib {
		t.Fatalf("LayersSize %d after running big:1 on two drivers, want at least %d (its 8 MiB layer unpacked on each)", got, base+2*8*mib)
	}
	c.expect(0, "Deleted: sha256:", "rmi", "big:1")
	if got := layers(); got >= base+mib {
		t.Errorf("LayersSize %d after rmi big:1, want about %d: its layers stayed on the drivers", got, base)
	}

	// A container stands on the layer: rmi -f only untags the image (as
	// dockerd does), which keeps it, dangling, with its layer; a prune
	// then removes both, and its reclaimed space counts the layer.
	mk("big:2")
	c.expect(0, "", "run", "-d", "--name", "hold", "big:2", "sleep", "100")
	c.expect(0, "Untagged: big:2", "rmi", "-f", "big:2")
	c.expect(0, "hold", "rm", "-f", "hold")
	if got := layers(); got < base+8*mib {
		t.Fatalf("LayersSize %d with the dangling image still there, want its layer kept (at least %d)", got, base+8*mib)
	}
	if out := c.expect(0, "Total reclaimed space", "image", "prune", "-f"); strings.Contains(out, "Total reclaimed space: 0B") {
		t.Errorf("image prune reclaimed nothing: %s", out)
	}
	if got := layers(); got >= base+mib {
		t.Errorf("LayersSize %d after the prune, want about %d", got, base)
	}
}
