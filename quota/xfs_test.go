package quota

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/loopfs"
)

// The structs must match the kernel's layout byte for byte.
func TestXFSStructLayout(t *testing.T) {
	if n := unsafe.Sizeof(diskQuota{}); n != 112 {
		t.Errorf("fs_disk_quota is 112 bytes, ours %d", n)
	}
	if n := unsafe.Sizeof(fsxattr{}); n != 28 {
		t.Errorf("fsxattr is 28 bytes, ours %d", n)
	}
	if got := qcmd(qXSetQLim, prjQuota); got != 0x580402 {
		t.Errorf("Q_XSETPQLIM = %#x, want 0x580402", got)
	}
}

func TestXFSRefusesOtherFilesystems(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	_, err := NewXFS(fs.Dir)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "ext4") || !strings.Contains(err.Error(), "prjquota") {
		t.Fatalf("got %v", err)
	}
}

func TestXFSLimit(t *testing.T) {
	fs := loopfs.ForTestWith(t, "xfs", 0, "prjquota") // meant for the qemu test guest: this host kernel lacks xfs quota
	x, err := NewXFS(fs.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(fs.Dir, "limited")
	os.Mkdir(dir, 0o755)
	ctx := context.Background()
	target := Target{Path: dir, Project: 4242}
	if err := x.Set(ctx, target, 10<<20); err != nil {
		t.Fatal(err)
	}
	write := func(name string, n int) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write(make([]byte, n)); err != nil {
			return err
		}
		return f.Sync()
	}
	if err := write("fits", 5<<20); err != nil {
		t.Fatalf("5 MiB under 10 MiB: %v", err)
	}
	if err := write("too-big", 20<<20); !errors.Is(err, unix.EDQUOT) && !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("20 MiB under 10 MiB: %v", err)
	}
	q, err := x.Get(ctx, target)
	if err != nil || q.Limit != 10<<20 || q.Used < 5<<20 {
		t.Fatalf("quota %+v %v", q, err)
	}
	if err := x.Clear(ctx, target); err != nil {
		t.Fatal(err)
	}
	if err := write("after-clear", 20<<20); err != nil {
		t.Fatalf("write after clearing the limit: %v", err)
	}
}
