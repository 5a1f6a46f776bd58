// Package loopfs is layerlab's one helper for temporary filesystems and
// loop devices: it makes a sparse image file, formats it (ext4, xfs,
// btrfs), attaches it to a loop device with autoclear and mounts it. Close
// unmounts, which frees the loop device, and deletes the image. Attach
// gives the bare loop device, for users such as device-mapper pools.
package loopfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
)

// mkfs holds the command that formats each supported type. The image is
// formatted as a plain file, before any loop device exists.
var mkfs = map[string][]string{
	"ext4":  {"mkfs.ext4", "-q", "-F", "-E", "nodiscard"},
	"xfs":   {"mkfs.xfs", "-q", "-f", "-K"},
	"btrfs": {"mkfs.btrfs", "-q", "-f", "--nodiscard"},
}

// MinSize is the smallest image mkfs.xfs accepts (300 MiB) rounded up.
const MinSize = 512 << 20

// Types returns the filesystem types loopfs can make.
func Types() []string { return []string{"btrfs", "ext4", "xfs"} }

// FS is a mounted loop-backed filesystem.
type FS struct {
	Type    string
	Dir     string // the mount point
	Image   string // the backing file
	Device  string // /dev/loopN
	Options string // mount data
	// DirectIO says the loop device bypasses the host page cache, so
	// flushes and block statistics reflect the image file, not a cache.
	DirectIO bool
	scratch  string // directory holding Image and Dir, removed on Close
}

// Check returns nil when fstype can be made here, else why not.
func Check(fstype string) error {
	args, ok := mkfs[fstype]
	if !ok {
		return fmt.Errorf("loop filesystem %q: %w; loopfs makes %s", fstype, drivers.ErrInvalidArgument, strings.Join(Types(), ", "))
	}
	if !kernel.IsRoot() {
		return fmt.Errorf("loop filesystem %s: %w: needs root", fstype, drivers.ErrUnavailable)
	}
	if !command.Available(args[0]) {
		return fmt.Errorf("loop filesystem %s: %w: %s is not installed (run `make setup`)", fstype, drivers.ErrUnavailable, args[0])
	}
	if !kernel.HasFilesystem(fstype) {
		return fmt.Errorf("loop filesystem %s: %w: the kernel does not list %s in /proc/filesystems", fstype, drivers.ErrUnavailable, fstype)
	}
	return nil
}

// New makes a filesystem of fstype and size bytes in a new directory under
// parent and mounts it with the given mount data (may be empty).
func New(ctx context.Context, parent, fstype string, size int64, data string) (_ *FS, err error) {
	if err := Check(fstype); err != nil {
		return nil, err
	}
	if size < MinSize {
		size = MinSize
	}
	scratch, err := os.MkdirTemp(parent, "loopfs-"+fstype+"-")
	if err != nil {
		return nil, err
	}
	fs := &FS{Type: fstype, Dir: filepath.Join(scratch, "mnt"), Image: filepath.Join(scratch, "image"), Options: data, scratch: scratch}
	defer func() {
		if err != nil {
			os.RemoveAll(scratch)
		}
	}()
	if err := os.Mkdir(fs.Dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(fs.Image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	args := mkfs[fstype]
	if _, err := command.Run(ctx, args[0], append(args[1:], fs.Image)...); err != nil {
		return nil, fmt.Errorf("format %s: %w", fstype, err)
	}
	if err := fs.attachAndMount(); err != nil {
		return nil, err
	}
	return fs, nil
}

// attachAndMount binds the image to a free loop device with autoclear, so
// the device goes away with the last unmount, and mounts it.
func (fs *FS) attachAndMount() error {
	loop, n, err := attach(fs.Image)
	if err != nil {
		return err
	}
	dev := loop.Name()
	var opts []string
	if fs.Options != "" {
		opts = strings.Split(fs.Options, ",")
	}
	if err := mount.Filesystem(dev, fs.Dir, fs.Type, opts...); err != nil {
		_ = unix.IoctlSetInt(int(loop.Fd()), unix.LOOP_CLR_FD, 0)
		loop.Close()
		return err
	}
	// With autoclear the device detaches when the mount, its last user
	// once this descriptor is closed, goes away.
	loop.Close()
	fs.Device = dev
	dio, _ := os.ReadFile(fmt.Sprintf("/sys/block/loop%d/loop/dio", n))
	fs.DirectIO = strings.TrimSpace(string(dio)) == "1"
	return nil
}

// Attach binds image to a free loop device, as New does for its images:
// with autoclear, and with direct I/O where the host filesystem allows it.
// It returns the device and release, which closes layerlab's descriptor of
// it. Autoclear detaches the device when its last opener closes it: before
// release that is the caller, so release alone undoes Attach; a user that
// opens the device first (a mount, a device-mapper table) keeps it attached
// until that user lets go, so the device lives exactly as long as its user.
func Attach(image string) (dev string, release func() error, err error) {
	loop, _, err := attach(image)
	if err != nil {
		return "", nil, err
	}
	return loop.Name(), loop.Close, nil
}

// attach binds image to a free loop device with autoclear and returns the
// open device and its number.
func attach(image string) (*os.File, int, error) {
	img, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("loop devices: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; attempt < 20; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, 0, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		loop, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("open %s: %w", dev, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(img.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO
		copy(cfg.Info.File_name[:], image)
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if errors.Is(err, unix.EINVAL) { // the host filesystem cannot do direct I/O
			cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
			err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		}
		if errors.Is(err, unix.EBUSY) {
			loop.Close() // another process took it between GET_FREE and here
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			loop.Close()
			return nil, 0, fmt.Errorf("attach %s to %s: %w", image, dev, err)
		}
		return loop, n, nil
	}
	return nil, 0, fmt.Errorf("attach %s: every free loop device was taken by others: %w", image, unix.EBUSY)
}

// Close unmounts everything under the mount point, which detaches the loop
// device, and removes the image.
func (fs *FS) Close() error {
	points, err := mount.Under(fs.Dir)
	if err != nil {
		return err
	}
	for _, p := range points {
		if err := mount.UnmountAll(p); err != nil {
			return fmt.Errorf("loop filesystem %s: %w", fs.Dir, err)
		}
	}
	return os.RemoveAll(fs.scratch)
}

// TB is the part of testing.TB that ForTest uses; taking an interface keeps
// the testing package out of binaries.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
	Errorf(format string, args ...any)
}

// ForTest makes a filesystem for a test and tears it down when the test
// ends, also when it fails. When the filesystem cannot be made here (not
// root, no mkfs, not in the kernel) the test is skipped as missing the
// feature named by fstype, which LAYERLAB_REQUIRE turns into a failure
// (drivers/feature).
func ForTest(t TB, fstype string, size int64) *FS {
	t.Helper()
	return ForTestWith(t, fstype, size, "")
}

// ForTestWith is ForTest with mount data (such as "prjquota"). When the
// kernel refuses the data while the same filesystem mounts without it, the
// kernel lacks the feature the data asks for (xfs-quota for xfs's quota
// options) and the test is skipped as missing it; any other failure fails
// the test.
func ForTestWith(t TB, fstype string, size int64, data string) *FS {
	t.Helper()
	if err := Check(fstype); err != nil {
		if !errors.Is(err, drivers.ErrUnavailable) {
			t.Fatalf("loop filesystem: %v", err)
		}
		feature.Skip(t, fstype, "%v", err)
		return nil
	}
	ctx := context.Background()
	fs, err := New(ctx, os.TempDir(), fstype, size, data)
	if err != nil && data != "" && errors.Is(err, unix.EINVAL) {
		if name := optionFeature(fstype, data); name != "" && mountsWithout(ctx, fstype, size) {
			feature.Skip(t, name, "%s mounts, but the kernel refuses it with %q: %v", fstype, data, err)
			return nil
		}
	}
	if err != nil {
		t.Fatalf("loop filesystem: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if err := fs.Close(); err != nil {
			t.Errorf("tear down loop filesystem: %v", err)
		}
	})
	return fs
}

// xfsQuotaOptions are xfs's mount options that need CONFIG_XFS_QUOTA;
// without it the kernel refuses each with EINVAL ("quota support not
// available in this kernel").
var xfsQuotaOptions = []string{
	"quota", "usrquota", "uquota", "uqnoenforce", "qnoenforce",
	"grpquota", "gquota", "gqnoenforce", "prjquota", "pquota", "pqnoenforce",
}

// optionFeature names the kernel feature that mount data asks of fstype,
// "" when the data asks for none that a kernel may lack (then a refusal is
// a failure, not a missing feature).
func optionFeature(fstype, data string) string {
	if fstype != "xfs" {
		return ""
	}
	for _, o := range strings.Split(data, ",") {
		if slices.Contains(xfsQuotaOptions, o) {
			return feature.XFSQuota
		}
	}
	return ""
}

// mountsWithout reports whether a filesystem of fstype mounts here with no
// mount data, which tells a refused option from a broken setup.
func mountsWithout(ctx context.Context, fstype string, size int64) bool {
	fs, err := New(ctx, os.TempDir(), fstype, size, "")
	if err != nil {
		return false
	}
	return fs.Close() == nil
}
