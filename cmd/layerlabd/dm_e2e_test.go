package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/devicemapper"
	"github.com/layerlab/layerlab/drivers/feature"
)

// TestEndToEndDevicemapper runs containers on devicemapper thin devices
// through the docker CLI, next to overlay2 in the same daemon: the
// container's root is its own /dev/mapper device, exec and logs work,
// resource limits land in cgroup v2's files and docker stats reads them,
// and a SIGTERM leaves no device, mount or cgroup. Devicemapper needs a
// kernel this host lacks: `make vm-test` runs it in the qemu guest (a
// static layerlabd and the docker CLI in its share, pure cgroup v2).
func TestEndToEndDevicemapper(t *testing.T) {
	if p := devicemapper.Probe(os.TempDir()); !p.Available() {
		feature.Skip(t, feature.DeviceMapper, "devicemapper: %s", p.Reason)
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	e.drivers = "devicemapper,overlay2"
	// The guest's kernel has bridge and veth as modules it may not load;
	// this test is about storage, so its containers get network none.
	e.opts = []string{"--bridge", "none"}
	e.start(t, "layerlabd.log")
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	c.expect(0, "devicemapper", "info")
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)

	out := c.expect(0, "", "run", "--rm", "--storage-opt", "driver=devicemapper", "busybox", "cat", "/proc/mounts")
	if root := rootMount(out); !strings.HasPrefix(root, "/dev/mapper/") {
		t.Errorf("the container's root on devicemapper is %q, want a /dev/mapper thin device", root)
	}
	c.expect(0, "", "run", "-d", "--name", "thin", "--storage-opt", "driver=devicemapper", "busybox", "sh", "-c", "echo up; exec sleep 1000")
	var insp []struct{ GraphDriver struct{ Name string } }
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "thin")), &insp); err != nil || len(insp) != 1 || insp[0].GraphDriver.Name != "devicemapper" {
		t.Errorf("inspect thin: GraphDriver %+v (%v), want devicemapper", insp, err)
	}
	c.expect(0, "written\n", "exec", "thin", "sh", "-c", "echo written > /f; cat /f")
	// The log copy runs beside the container: wait for the line.
	eventually(t, time.Minute, "thin's first line in its logs", func() bool { out, _ := c.run("logs", "thin"); return out == "up\n" })
	c.expect(0, "thin", "rm", "-f", "thin")
	// overlay2 in the same daemon.
	c.expect(0, "overlay", "run", "--rm", "busybox", "sh", "-c", "grep ' / ' /proc/mounts")
	// The guest's cgroups are pure v2: the limits land in memory.max and
	// cpu.max, and docker stats reads them back.
	checkMemoryAndCPULimits(t, c)
	c.expect(0, "lim", "rm", "-f", "lim")
	// --blkio-weight on v2 becomes io.weight (runc's conversion: 300 ->
	// 2930) where the kernel has a weight file, else dockerd's warning.
	out = c.expect(0, "", "run", "--rm", "--blkio-weight", "300", "busybox", "sh", "-c", "cat /sys/fs/cgroup/io.weight /sys/fs/cgroup/io.bfq.weight 2>/dev/null; true")
	if !strings.Contains(out, "2930") && !strings.Contains(out, "300") && !strings.Contains(out, "Weight discarded") {
		t.Errorf("--blkio-weight 300 on cgroup v2: %q, want the weight in io.weight or dockerd's warning", out)
	}
	e.d.terminate(t)
	checkNoLeftovers(t)
}
