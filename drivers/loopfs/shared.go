package loopfs

import (
	"os"

	"github.com/layerlab/layerlab/drivers/mount"
)

// SharedForTest makes a directory that is a shared mount point, so mounts
// made below it later in this mount namespace (zfs-fuse's datasets, which
// its daemon mounts in the host's namespace) reach a daemon the test runs
// in a namespace copied from this one with slave propagation (layerlabd or
// containerd under `unshare --mount --propagation slave`). The root mount
// here is private, so without it such a daemon would not see them. It is
// unmounted and removed when the test ends.
func SharedForTest(t TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shared-")
	if err != nil {
		t.Fatalf("shared dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	if err := mount.Filesystem(dir, dir, "", "bind"); err != nil {
		t.Fatalf("bind %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := mount.Unmount(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if err := mount.MakeShared(dir); err != nil {
		t.Fatalf("%v", err)
	}
	return dir
}
