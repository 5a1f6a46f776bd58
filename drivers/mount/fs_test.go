package mount_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// TestFilesystem mounts a tmpfs with a flag (ro) and data (size=) through
// the helper and checks both reached the kernel.
func TestFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	target := t.TempDir()
	if err := mount.Filesystem("layerlab-test", target, "tmpfs", "ro", "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer mount.UnmountAll(target)
	m, err := mount.Lookup(target)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mountpoint != target || m.FSType != "tmpfs" || m.Source != "layerlab-test" {
		t.Fatalf("mounted %s %s at %s", m.FSType, m.Source, m.Mountpoint)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		t.Fatal(err)
	}
	if size := st.Blocks * uint64(st.Bsize); size != 1<<20 {
		t.Errorf("size %d, want 1 MiB (size=1m not passed as data)", size)
	}
	if err := os.WriteFile(filepath.Join(target, "f"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write on a ro mount: %v, want EROFS (ro not passed as a flag)", err)
	}
	if err := mount.Filesystem("none", filepath.Join(target, "missing"), "tmpfs"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("mount on a missing directory: %v, want ENOENT", err)
	}
}

// TestSyncFS writes a file to a loop xfs (which, unlike ext4, writes
// nothing in the background after mount) without syncing it, and checks
// that SyncFS makes the loop device write at least the file's bytes.
func TestSyncFS(t *testing.T) {
	fs := loopfs.ForTest(t, "xfs", 0)
	written := func() int64 {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("/sys/class/block", filepath.Base(fs.Device), "stat"))
		if err != nil {
			t.Fatal(err)
		}
		sectors, err := strconv.ParseInt(strings.Fields(string(b))[6], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return sectors * 512
	}
	const size = 8 << 20
	before := written()
	if err := os.WriteFile(filepath.Join(fs.Dir, "f"), make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mount.SyncFS(filepath.Join(fs.Dir, "f")); err != nil {
		t.Fatal(err)
	}
	if n := written() - before; n < size {
		t.Errorf("%s wrote %d bytes by the end of syncfs, want at least the file's %d", fs.Device, n, size)
	}
	if err := mount.SyncFS(filepath.Join(fs.Dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SyncFS of a missing path: %v, want ErrNotExist", err)
	}
}
