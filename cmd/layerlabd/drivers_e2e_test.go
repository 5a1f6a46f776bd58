package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/loopfs"
)

// TestEndToEndStorageDrivers runs containers on vfs, overlay, overlay2,
// btrfs and zfs in ONE layerlabd, each picked per container with
// --storage-opt driver=X, and checks from inside each container that its
// root is X's mount; then --storage-opt size= through btrfs qgroups and
// its refusal on a driver without quota.
func TestEndToEndStorageDrivers(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	btrfs := loopfs.ForTest(t, "btrfs", 1<<30)
	zfs := loopfs.ZFSForTest(t)
	zfsHome := filepath.Join(zfs.Dir, "layerlabd")
	e.drivers = "vfs,overlay,overlay2,btrfs,zfs"
	e.opts = []string{"--storage-opt", "btrfs.home=" + filepath.Join(btrfs.Dir, "layerlabd"), "--storage-opt", "zfs.home=" + zfsHome}
	e.start(t, "layerlabd.log")
	c := e.busyboxCLI(t)

	out := c.expect(0, "Storage Driver: overlay2", "info")
	for _, name := range []string{"vfs", "overlay", "overlay2", "btrfs", "zfs"} {
		if !strings.Contains(out, name) {
			t.Errorf("docker info does not list the enabled driver %s:\n%s", name, out)
		}
	}
	// What each driver's root mount looks like in /proc/mounts: its
	// filesystem type, and a word of its source or options that only this
	// driver's mount has.
	want := map[string][2]string{
		"vfs":      {"ext4", ""},
		"overlay":  {"overlay", filepath.Join(e.dataRoot, "overlay") + "/"},
		"overlay2": {"overlay", filepath.Join(e.dataRoot, "overlay2") + "/"},
		"btrfs":    {"btrfs", "subvol=/layerlabd/"},
		"zfs":      {zfs.Type, zfs.Pool + "/"},
	}
	for _, name := range []string{"zfs", "btrfs", "vfs", "overlay", "overlay2"} {
		w := want[name]
		out := c.expect(0, "", "run", "--rm", "--storage-opt", "driver="+name, "busybox", "cat", "/proc/mounts")
		root := rootMount(out)
		f := strings.Fields(root)
		if len(f) < 4 || f[2] != w[0] || !strings.Contains(root, w[1]) {
			t.Errorf("driver %s: the container's root is %q, want type %s with %q", name, root, w[0], w[1])
		}
	}

	// A created container shows its own driver in inspect.
	c.expect(0, "", "create", "--name", "onzfs", "--storage-opt", "driver=zfs", "busybox", "true")
	var insp []struct{ GraphDriver struct{ Name string } }
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "onzfs")), &insp); err != nil || len(insp) != 1 || insp[0].GraphDriver.Name != "zfs" {
		t.Errorf("inspect onzfs: GraphDriver %+v (%v), want zfs", insp, err)
	}
	c.expect(0, "onzfs", "rm", "onzfs")

	// size= through btrfs qgroups: 48 MiB fit under 64M, 96 MiB do not.
	c.expect(0, "", "run", "--rm", "--storage-opt", "driver=btrfs", "--storage-opt", "size=64M", "busybox",
		"sh", "-c", "dd if=/dev/zero of=/f bs=1M count=48 && sync")
	c.expect(1, "quota exceeded", "run", "--rm", "--storage-opt", "driver=btrfs", "--storage-opt", "size=64M", "busybox",
		"sh", "-c", "dd if=/dev/zero of=/f bs=1M count=96 && sync")
	c.expect(125, "vfs cannot limit a container's size here", "run", "--rm", "--storage-opt", "driver=vfs", "--storage-opt", "size=64M", "busybox", "true")
	c.expect(125, `size="lots": want a size such as 10G`, "run", "--rm", "--storage-opt", "size=lots", "busybox", "true")
	c.expect(125, "enabled: ", "run", "--rm", "--storage-opt", "driver=aufs", "busybox", "true")

	e.d.terminate(t)
	checkNoLeftovers(t)
	if _, err := os.Stat(e.sock); !os.IsNotExist(err) {
		t.Errorf("socket %s after SIGTERM: %v", e.sock, err)
	}
}

// rootMount returns the line of /proc/mounts text that mounts "/".
func rootMount(mounts string) string {
	root := ""
	for _, line := range strings.Split(mounts, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "/" {
			root = line // the last one is the one on top
		}
	}
	return root
}
