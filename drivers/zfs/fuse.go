package zfs

// Where zfs-fuse 0.7 (Debian's userspace ZFS, pool version 23) differs
// from kernel OpenZFS, as far as this driver is concerned. The rest of the
// driver is written against what both do.
//
//   - A daemon serves the zfs and zpool commands over
//     /var/run/zfs/zfs_socket; when it is not running every command fails
//     with "connect: ...". There is no /dev/zfs.
//   - Mounted datasets show in mountinfo as fuse.zfs, not zfs; the source
//     is the dataset name in both.
//   - A dataset with mountpoint=legacy cannot be mounted at all: there is
//     no mount.zfs, and `mount -t fuse.zfs` runs mount.fuse, which cannot
//     run zfs-fuse's zfs command as a mount helper. So every snapshot's
//     dataset is mounted by zfs itself at home/snapshots/<id>
//     (mountpoint=that directory) and handed out as a bind mount of it,
//     which works the same on both.
//   - `zfs list` takes no -p (and knows no written or logicalused), so
//     go-zfs's GetDataset fails there, and with it go-zfs's
//     CreateFilesystem, Clone, Snapshot, Mount, Unmount, Datasets and
//     Children, which all run the command and then GetDataset (the
//     command itself has then succeeded); GetZpool fails too (`zpool get
//     -Hp`). go-zfs's Dataset.Destroy and SetProperty work and are used.
//     Numbers come from `zfs get -Hp -o value` (quota.ZFS.Get).
//   - The daemon lets go of an unmounted dataset a moment after `zfs
//     umount` returns; a destroy in between fails "dataset is busy"
//     (nearly always when the dataset was written just before, and under
//     concurrent removes). destroy retries busy for a bounded time.
//   - `zfs get readonly` shows "off (temporary)" on a dataset set
//     readonly=on, because it reads the FUSE mount's rw option; writes do
//     fail with EROFS. Nothing here reads the property back.
//   - Extended attributes are off unless the daemon runs with
//     --enable-xattr (-x): every xattr call fails with EOPNOTSUPP, and
//     containerd's suite fails on the first listxattr. Probe says so
//     (xattrReason).
//   - listxattr creates an inode's hidden xattr directory when it has
//     none, and on a readonly=on dataset that fails, with EOPNOTSUPP. So
//     a view's clone is not made readonly=on under zfs-fuse (viewProps):
//     its bind mount is read-only, which is what a view promises; only
//     the dataset's own mount under home/snapshots stays writable.
//   - Timestamps have whole seconds only (stat shows .000000000), so
//     Usage tells a clone's own inodes by inode number, not by ctime.
//   - The transaction group timeout is 30 s (OpenZFS: 5 s) and there is
//     no `zpool sync`; used (and statfs, for larger writes) lags until a
//     group syncs, fsync only writing the intent log. Usage forces one
//     (see quota.ZFS.Get). syncfs(2) on a fuse.zfs mount makes zfs-fuse
//     sync nothing (it has no FUSE syncfs).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v3"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/command"
)

// isZFSMount reports whether a mountinfo type is a mounted zfs dataset.
func isZFSMount(fstype string) bool { return fstype == "zfs" || fstype == "fuse.zfs" }

// fuse reports whether the zfs commands talk to zfs-fuse.
func fuse() bool {
	_, err := os.Stat("/dev/zfs")
	return err != nil
}

// implementation names what serves the zfs commands, for facts and notes.
func implementation() string {
	if fuse() {
		return "zfs-fuse (userspace, no /dev/zfs)"
	}
	return "kernel OpenZFS (/dev/zfs)"
}

// daemonReason returns why the zfs commands cannot reach ZFS, or "".
func daemonReason(ctx context.Context) string {
	_, err := command.Run(ctx, "zfs", "list", "-H", "-o", "name", "-d", "0")
	if err == nil {
		return ""
	}
	msg, _, _ := strings.Cut(strings.TrimSpace(stderr(err)), "\n") // "connect: ...", then advice
	if fuse() && strings.Contains(msg, "connect") {
		return fmt.Sprintf("the zfs-fuse daemon is not running (zfs list: %s); start it as root with `zfs-fuse --enable-xattr`", msg)
	}
	return fmt.Sprintf("zfs list fails: %v; check that ZFS works here", err)
}

// xattrReason returns why files under dir cannot carry xattrs, or "".
func xattrReason(dir string) string {
	if _, err := unix.Listxattr(dir, nil); errors.Is(err, unix.EOPNOTSUPP) {
		if fuse() {
			return fmt.Sprintf("zfs-fuse runs without xattr support (listxattr %s: %v), which container images need; restart the daemon with --enable-xattr", dir, err)
		}
		return fmt.Sprintf("the dataset under %s has no xattr support (listxattr: %v); set xattr=on", dir, err)
	}
	return ""
}

// viewProps are the zfs properties that make a view's clone read-only.
func viewProps() []string {
	if fuse() {
		return nil // see listxattr above
	}
	return []string{"-o", "readonly=on"}
}

// busyRetry bounds how long destroy waits for zfs-fuse to let go of a
// dataset it has just unmounted.
const busyRetry = 10 * time.Second

// destroy destroys dataset and its snapshots (-r, not -R: clones of them
// are other snapshots' storage and must never go with it). A dataset that
// does not exist is not an error.
func destroy(ctx context.Context, dataset string) error {
	d := &gozfs.Dataset{Name: dataset}
	deadline := time.Now().Add(busyRetry)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := d.Destroy(gozfs.DestroyRecursive)
		msg := stderr(err)
		switch {
		case err == nil, strings.Contains(msg, "does not exist"):
			return nil
		case strings.Contains(msg, "busy") && time.Now().Before(deadline) && ctx.Err() == nil:
			time.Sleep(wait)
		default:
			return err
		}
	}
}

// stderr is what zfs printed for err, from either command runner.
func stderr(err error) string {
	var ce *command.Error
	var ge *gozfs.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return ce.Stderr
	case errors.As(err, &ge):
		return ge.Stderr
	}
	return err.Error()
}
