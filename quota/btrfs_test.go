package quota

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/dennwc/btrfs"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// The structs must match the kernel's layout byte for byte, and the
// request numbers encode their sizes.
func TestBtrfsStructLayout(t *testing.T) {
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"btrfs_ioctl_search_args", unsafe.Sizeof(btrfsSearchArgs{}), 4096},
		{"btrfs_ioctl_search_key", unsafe.Offsetof(btrfsSearchArgs{}.Buf), 104},
		{"btrfs_ioctl_search_header", unsafe.Sizeof(btrfsSearchHeader{}), 32},
		{"btrfs_ioctl_qgroup_limit_args", unsafe.Sizeof(btrfsQgroupLimitArgs{}), 48},
		{"btrfs_ioctl_quota_ctl_args", unsafe.Sizeof(btrfsQuotaCtlArgs{}), 16},
	} {
		if c.got != c.want {
			t.Errorf("%s is %d bytes, ours %d", c.what, c.want, c.got)
		}
	}
	ioc := func(dir, nr, size uintptr) uintptr { return dir<<30 | size<<16 | 0x94<<8 | nr }
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"BTRFS_IOC_TREE_SEARCH", btrfsIocTreeSearch, ioc(3, 17, unsafe.Sizeof(btrfsSearchArgs{}))},
		{"BTRFS_IOC_QUOTA_CTL", btrfsIocQuotaCtl, ioc(3, 40, unsafe.Sizeof(btrfsQuotaCtlArgs{}))},
		{"BTRFS_IOC_QGROUP_LIMIT", btrfsIocQgroupLimit, ioc(2, 43, unsafe.Sizeof(btrfsQgroupLimitArgs{}))},
		{"BTRFS_IOC_QUOTA_RESCAN_WAIT", btrfsIocQuotaRescanWait, ioc(0, 46, 0)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.what, c.got, c.want)
		}
	}
}

func TestBtrfsRefusesOtherFilesystems(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	_, err := NewBtrfs(fs.Dir)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "ext4") {
		t.Fatalf("got %v, want ErrUnsupported naming ext4", err)
	}
}

// A 10 MiB limit on a subvolume: 5 MiB fits and is what Get reports, 20
// MiB more fails with EDQUOT, and after Clear it fits.
func TestBtrfsLimit(t *testing.T) {
	fs := loopfs.ForTest(t, "btrfs", 0)
	ctx := context.Background()
	q, err := NewBtrfs(fs.Dir)
	if err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(fs.Dir, "sub")
	if err := btrfs.CreateSubVolume(sub); err != nil {
		t.Fatal(err)
	}
	target := Target{Path: sub}
	if on, err := q.Enabled(); err != nil || on {
		t.Fatalf("quota on a fresh filesystem: on=%v, %v", on, err)
	}
	if _, err := q.Get(ctx, target); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("Get with quota off: got %v, want ErrFailedPrecondition", err)
	}
	if err := q.Clear(ctx, target); err != nil {
		t.Errorf("Clear with quota off: %v", err)
	}
	plain := filepath.Join(sub, "plain")
	os.Mkdir(plain, 0o755)
	if err := q.Set(ctx, Target{Path: plain}, 1<<20); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("Set on a plain directory: got %v, want ErrInvalidArgument", err)
	}
	if err := q.Set(ctx, target, 10<<20); err != nil {
		t.Fatal(err)
	}
	if on, err := q.Enabled(); err != nil || !on {
		t.Fatalf("quota after Set: on=%v, %v", on, err)
	}
	if err := writeBtrfs(filepath.Join(sub, "fits"), 5<<20); err != nil {
		t.Fatalf("5 MiB under a 10 MiB limit: %v", err)
	}
	got, err := q.Get(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	if got.Limit != 10<<20 || got.Used < 5<<20 || got.Used > 6<<20 {
		t.Errorf("Get after writing 5 MiB under 10 MiB: %+v", got)
	}
	if err := writeBtrfs(filepath.Join(sub, "too-big"), 20<<20); !errors.Is(err, unix.EDQUOT) {
		t.Errorf("20 MiB more under a 10 MiB limit: got %v, want EDQUOT", err)
	}
	os.Remove(filepath.Join(sub, "too-big"))
	if err := q.Clear(ctx, target); err != nil {
		t.Fatal(err)
	}
	if got, err = q.Get(ctx, target); err != nil || got.Limit != 0 {
		t.Errorf("Get after Clear: %+v, %v", got, err)
	}
	if err := writeBtrfs(filepath.Join(sub, "after-clear"), 20<<20); err != nil {
		t.Errorf("20 MiB after Clear: %v", err)
	}
}

func writeBtrfs(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1) // not zeros, in case compression is on
	}
	for i := 0; i < n>>20; i++ {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	return f.Sync()
}
