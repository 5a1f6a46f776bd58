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
//   - `zfs umount` is umount(2) in the zfs command: it returns once the
//     kernel has dropped the mount, while the daemon still owns the
//     dataset. The daemon learns of the unmount when its FUSE connection
//     ends, and tears the dataset down in the thread that serves the
//     connection: sync(2) of the whole machine, then zfs's unmount, which
//     commits the intent log and waits for the pool's dirty transaction
//     group to reach the pool's file, repeated while a file of the dataset
//     is still open. Only then does it close its /dev/fuse descriptor for
//     the connection and let go; a `zfs destroy` before that fails
//     "dataset is busy". How long that takes grows with what the machine
//     and the pool have to write: tens of milliseconds when idle, seconds
//     under load. So Remove waits for that descriptor to close (the
//     kernel names each descriptor's connection in /proc/PID/fdinfo; a
//     duplicate and kcmp(2) tell it from a later one given the same
//     numbers, see fuseConn) and destroys once; a destroy that is still
//     busy then is a real holder, which the error names. The teardown's
//     loop never ends when the daemon never gets the FUSE RELEASE of a
//     file of the dataset: the kernel sends it after close(2) returns and
//     drops it when the connection ends first. The thread then holds the
//     daemon's listener lock forever, and no FUSE request on any mount is
//     served again. So unmount first makes a request (statfs) that is
//     answered only after every release queued before it has been read.
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
	"path/filepath"
	"strconv"
	"strings"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v3"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
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

// releaseWait bounds how long Remove waits for zfs-fuse to tear down a
// dataset it has just unmounted. Teardown normally takes tens of
// milliseconds; it takes longer only while the machine has much to write,
// and never ends while a file of the dataset stays open.
const releaseWait = 2 * time.Minute

// fuseConn is the FUSE connection zfs-fuse serves one mounted dataset
// on: the minor number of the mount's device, which the kernel prints as
// fuse_connection in /proc/PID/fdinfo of the daemon's /dev/fuse
// descriptor for it. Neither number tells the connection apart from a
// later one: the minor is freed at the unmount, while the daemon still
// tears down, and the next mount may take it together with a descriptor
// number the daemon freed meanwhile. So the wait holds a duplicate of
// the daemon's descriptor (pidfd_getfd) and asks kcmp(2) whether the
// daemon's descriptor is still that same open file.
type fuseConn struct {
	id    uint32
	files []daemonFile
}

// daemonFile is one of the daemon's descriptors for the connection.
type daemonFile struct {
	pid, fd int
	dup     int // our duplicate of it, -1 where pidfd_getfd failed
}

// connOf returns the connection zfs-fuse serves dataset on at dir; ok is
// false when dir is not a fuse.zfs mount of dataset (kernel ZFS, or not
// mounted), so there is nothing to wait for. close releases what an ok
// connection holds.
func connOf(dir, dataset string) (c fuseConn, ok bool, err error) {
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		dir = resolved // as mountinfo has it
	}
	m, err := mount.Lookup(dir)
	if err != nil || m.Mountpoint != dir || m.FSType != "fuse.zfs" || m.Source != dataset {
		return c, false, nil
	}
	c.id = uint32(m.Minor)
	daemons, err := kernel.Processes("zfs-fuse")
	if err != nil {
		return c, false, err
	}
	for _, p := range daemons {
		pid, err := strconv.Atoi(p)
		if err != nil {
			continue
		}
		infos, _ := filepath.Glob(filepath.Join("/proc", p, "fdinfo", "*"))
		for _, info := range infos {
			fd, err := strconv.Atoi(filepath.Base(info))
			if err != nil || !c.named(pid, fd) {
				continue
			}
			f := daemonFile{pid: pid, fd: fd, dup: duplicate(pid, fd)}
			if f.dup >= 0 && !c.named(pid, fd) {
				unix.Close(f.dup) // closed between the read and the dup
				continue
			}
			c.files = append(c.files, f)
		}
	}
	if len(c.files) == 0 {
		return c, false, fmt.Errorf("cannot tell when zfs-fuse lets go of %s: no zfs-fuse descriptor in /proc/PID/fdinfo names its FUSE connection %d (older kernels do not print fuse_connection there): %w", dataset, c.id, drivers.ErrUnavailable)
	}
	return c, true, nil
}

// duplicate returns a descriptor of ours for the open file the daemon
// pid has as fd, or -1 when the kernel refuses (before Linux 5.6, or
// where ptrace access to the daemon is denied).
func duplicate(pid, fd int) int {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0) // always close-on-exec
	if err != nil {
		return -1
	}
	return dup
}

// named reports whether the daemon's descriptor fd names the connection's
// number in its fdinfo.
func (c fuseConn) named(pid, fd int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	return err == nil && strings.Contains(string(b), "\nfuse_connection:\t"+strconv.FormatUint(uint64(c.id), 10)+"\n")
}

// open reports whether the daemon still has f open: with a duplicate,
// whether its descriptor is still the same file (kcmp KCMP_FILE answers 0;
// EBADF once closed); without one, whether the descriptor names the
// connection's number, which a reuse of both numbers can fool.
func (c fuseConn) open(f daemonFile) bool {
	if f.dup < 0 {
		return c.named(f.pid, f.fd)
	}
	const kcmpFile = 0
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(f.pid), kcmpFile, uintptr(f.dup), uintptr(f.fd), 0)
	if errno == unix.ENOSYS || errno == unix.EPERM {
		return c.named(f.pid, f.fd)
	}
	return errno == 0 && r == 0
}

// inDaemonNamespace returns the nsenter prefix that runs a command in
// the daemon's mount namespace, or nothing when it is ours. zfs-fuse
// mounts a dataset in its own namespace, but `zfs umount` is umount(2) in
// the caller's: from another namespace (a layerlabd in one of its own, a
// slave of the daemon's) it would drop only the caller's copy, and the
// daemon, which still has the mount, would never let the dataset go.
func (c fuseConn) inDaemonNamespace() []string {
	ours, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil || len(c.files) == 0 {
		return nil
	}
	ns := fmt.Sprintf("/proc/%d/ns/mnt", c.files[0].pid)
	if theirs, err := os.Readlink(ns); err != nil || theirs == ours {
		return nil
	}
	return []string{"nsenter", "--mount=" + ns, "--"}
}

// close drops the duplicates. The last close of the daemon's file, and so
// the end of the connection, may be ours: after the daemon let go.
func (c fuseConn) close() {
	for _, f := range c.files {
		if f.dup >= 0 {
			unix.Close(f.dup)
		}
	}
}

// released waits until the daemon has closed its descriptors for the
// connection, which it does once it has torn the dataset down, checking
// every few milliseconds for at most releaseWait.
func (c fuseConn) released(ctx context.Context) error {
	deadline := time.Now().Add(releaseWait)
	for {
		open := false
		for _, f := range c.files {
			open = open || c.open(f)
		}
		if !open {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: zfs-fuse has not finished tearing the dataset down %v after its unmount (its FUSE connection %d is still open)%s", drivers.ErrFailedPrecondition, releaseWait, c.id, holders(c.id))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// holders names what keeps the filesystem of FUSE connection id alive,
// for an error message: a mount of it in any mount namespace, or a
// process with a file open on it (through a mount detached lazily).
func holders(id uint32) string {
	dev := "0:" + strconv.FormatUint(uint64(id), 10)
	var found []string
	seen := map[string]bool{}
	entries, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range entries {
		if ns, err := os.Readlink(filepath.Join(p, "ns", "mnt")); err == nil && !seen[ns] {
			seen[ns] = true
			b, _ := os.ReadFile(filepath.Join(p, "mountinfo"))
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 4 && f[2] == dev {
					found = append(found, fmt.Sprintf("mounted at %s in the mount namespace of pid %s", f[4], filepath.Base(p)))
				}
			}
		}
		fds, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(fd, &st) == nil && unix.Major(st.Dev) == 0 && unix.Minor(st.Dev) == id {
				target, _ := os.Readlink(fd)
				found = append(found, fmt.Sprintf("pid %s has %s open", filepath.Base(p), target))
			}
		}
	}
	if len(found) == 0 {
		return "; nothing else has it mounted or open, so the daemon itself is still at work: see its threads in /proc/PID/task/*/syscall"
	}
	return "; it is still in use: " + strings.Join(found, "; ")
}

// unmount unmounts dataset, mounted at dir, and under zfs-fuse waits
// until the daemon has let go of it, so that it can be destroyed (by
// Remove now, or by the sweep of a later open after Close). A dataset
// that is not mounted or does not exist is not an error.
func unmount(ctx context.Context, dir, dataset string) error {
	conn, isFuse, err := connOf(dir, dataset)
	if err != nil {
		return fmt.Errorf("unmount %s: %w", dataset, err)
	}
	if isFuse {
		defer conn.close()
		// The kernel sends a file's FUSE RELEASE after close(2) returns,
		// and drops what is still queued when the connection ends: a
		// release lost so leaves the daemon's teardown looping forever.
		// statfs is a request answered in turn behind any release queued
		// before it, so once it returns the daemon has them all.
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return fmt.Errorf("unmount %s: statfs %s: %w", dataset, dir, err)
		}
	}
	args := []string{"zfs", "umount", dataset}
	if isFuse {
		args = append(conn.inDaemonNamespace(), args...)
	}
	if _, err := command.Run(ctx, args[0], args[1:]...); err != nil {
		if msg := stderr(err); !strings.Contains(msg, "not currently mounted") && !strings.Contains(msg, "does not exist") {
			return fmt.Errorf("unmount %s: %w", dataset, err)
		}
	}
	if isFuse {
		if err := conn.released(ctx); err != nil {
			return fmt.Errorf("unmount %s: %w", dataset, err)
		}
	}
	return nil
}

// destroy destroys dataset and its snapshots (-r, not -R: clones of them
// are other snapshots' storage and must never go with it). A dataset that
// does not exist is not an error.
func destroy(dataset string) error {
	err := (&gozfs.Dataset{Name: dataset}).Destroy(gozfs.DestroyRecursive)
	if err != nil && strings.Contains(stderr(err), "does not exist") {
		return nil
	}
	return err
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
