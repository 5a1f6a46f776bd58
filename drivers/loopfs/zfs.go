package loopfs

// A zfs pool on a sparse image file, for the zfs driver's tests and the
// benchmark harness. Without kernel ZFS (no /dev/zfs) the pool is served
// by zfs-fuse, whose one daemon per machine (fixed socket
// /var/run/zfs/zfs_socket, fixed lock file) the fixtures of every process
// share: the first one starts it, the last one out stops it, but only if
// a fixture started it. Who holds it is kept in files under ZFSStateDir,
// so that two test binaries running at once (go test ./...) or two
// fixtures in one binary do not pull the daemon from under each other,
// and a process that died without Close is noticed, its pool destroyed
// and its files removed, by the next fixture.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
)

const (
	// ZFSMinSize is the smallest vdev zpool accepts.
	ZFSMinSize = 64 << 20
	// ZFSDefaultSize is the pool size NewZFS uses when asked for 0. The
	// image is sparse, so only what is written takes space.
	ZFSDefaultSize = 2 << 30
	// ZFSStateDir holds the daemon lock, the pid file of a daemon a
	// fixture started and one file per live fixture. It is on tmpfs, so
	// it goes at reboot together with any daemon it describes.
	ZFSStateDir = "/run/layerlab/zfs-fuse"

	zfsDaemonStart = 15 * time.Second // until the socket answers
	zfsDaemonStop  = 30 * time.Second // zfs-fuse gives its workers 10 s
	zfsBusyRetry   = 20 * time.Second // see destroyPool
)

// ZFS is a zfs pool on an image file whose root dataset, named Pool, is
// mounted at Dir. Type is the mount type: "zfs", or "fuse.zfs" under
// zfs-fuse. Device is empty: zfs reads the file itself.
type ZFS struct {
	FS
	Pool string
	// Fuse says zfs-fuse serves the pool; then the fixture holds the
	// daemon until Close.
	Fuse   bool
	holder string // our file under ZFSStateDir/holders
}

// zfsFuse reports whether the zfs commands talk to zfs-fuse: without the
// kernel module there is no /dev/zfs.
func zfsFuse() bool {
	_, err := os.Stat("/dev/zfs")
	return err != nil
}

// CheckZFS returns nil when a zfs pool can be made here, else why not.
func CheckZFS() error {
	if !kernel.IsRoot() {
		return fmt.Errorf("zfs pool: %w: needs root", drivers.ErrUnavailable)
	}
	for _, tool := range []string{"zpool", "zfs"} {
		if !command.Available(tool) {
			return fmt.Errorf("zfs pool: %w: %s is not installed (run `make setup`, which installs zfs-fuse)", drivers.ErrUnavailable, tool)
		}
	}
	if !zfsFuse() {
		return nil
	}
	if !command.Available("zfs-fuse") {
		return fmt.Errorf("zfs pool: %w: no /dev/zfs (kernel ZFS) and no zfs-fuse daemon binary; run `make setup`", drivers.ErrUnavailable)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("zfs pool: %w: zfs-fuse needs /dev/fuse: %v", drivers.ErrUnavailable, err)
	}
	return nil
}

// NewZFS makes a pool of size bytes on an image file in a new directory
// under parent and mounts its root dataset. Under zfs-fuse it starts the
// daemon if none is running.
func NewZFS(ctx context.Context, parent string, size int64) (_ *ZFS, err error) {
	if err := CheckZFS(); err != nil {
		return nil, err
	}
	switch {
	case size == 0:
		size = ZFSDefaultSize
	case size < ZFSMinSize:
		size = ZFSMinSize
	}
	scratch, err := os.MkdirTemp(parent, "loopfs-zfs-")
	if err != nil {
		return nil, err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		os.RemoveAll(scratch)
		return nil, err
	}
	z := &ZFS{
		FS:   FS{Type: "zfs", Dir: filepath.Join(scratch, "mnt"), Image: filepath.Join(scratch, "image"), scratch: scratch},
		Pool: "ll" + hex.EncodeToString(suffix),
		Fuse: zfsFuse(),
	}
	created := false
	defer func() {
		if err == nil {
			return
		}
		if created {
			err = errors.Join(err, destroyPool(context.Background(), z.Pool))
		}
		if z.holder != "" {
			err = errors.Join(err, releaseDaemon(z.holder))
		}
		os.RemoveAll(scratch)
	}()
	f, err := os.Create(z.Image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, err
	}
	if z.Fuse {
		if z.holder, err = holdDaemon(ctx, z.Pool, scratch); err != nil {
			return nil, err
		}
	}
	// cachefile=none keeps the pool out of /var/lib/zfs/zpool.cache, so a
	// daemon (re)started later never tries to import a pool whose image
	// is gone.
	if _, err := command.Run(ctx, "zpool", "create", "-o", "cachefile=none", "-m", z.Dir, z.Pool, z.Image); err != nil {
		return nil, fmt.Errorf("create zfs pool on %s: %w", z.Image, err)
	}
	created = true
	m, err := mount.Lookup(z.Dir)
	if err != nil {
		return nil, err
	}
	if m.Mountpoint != z.Dir || m.Source != z.Pool {
		return nil, fmt.Errorf("zfs pool %s: its dataset is not mounted at %s (found %s from %s there)", z.Pool, z.Dir, m.FSType, m.Source)
	}
	z.Type = m.FSType
	return z, nil
}

// Close destroys the pool, which unmounts its datasets and any bind mount
// of them, lets go of the daemon (stopping it if a fixture started it and
// nobody else holds it) and removes the image.
func (z *ZFS) Close() error {
	ctx := context.Background()
	err := destroyPool(ctx, z.Pool)
	// Whatever is still mounted under Dir (a pool that could not be
	// destroyed, a stray bind) must go before the files can.
	if points, uerr := mount.Under(z.Dir); uerr == nil {
		for _, p := range points {
			err = errors.Join(err, mount.UnmountAll(p))
		}
	}
	if z.holder != "" {
		err = errors.Join(err, releaseDaemon(z.holder))
		z.holder = ""
	}
	if err != nil {
		return fmt.Errorf("zfs pool %s: %w (image kept at %s)", z.Pool, err, z.Image)
	}
	return os.RemoveAll(z.scratch)
}

// destroyPool destroys pool; one that does not exist is not an error.
// zfs-fuse answers "pool is busy" while it is still releasing datasets it
// has just unmounted (it unmounts before destroying, and the daemon lets
// go of an unmounted dataset a moment later), so busy is retried.
func destroyPool(ctx context.Context, pool string) error {
	deadline := time.Now().Add(zfsBusyRetry)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		_, err := command.Run(ctx, "zpool", "destroy", "-f", pool)
		var ce *command.Error
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ce) && strings.Contains(ce.Stderr, "no such pool"):
			return nil
		case errors.As(err, &ce) && strings.Contains(ce.Stderr, "busy") && time.Now().Before(deadline):
			time.Sleep(wait)
		default:
			return fmt.Errorf("destroy zfs pool %s: %w", pool, err)
		}
	}
}

// HoldZFSDaemon keeps a zfs-fuse daemon up, starting one if none
// answers, until release is called: fixtures made and closed one after
// another then share it instead of each waiting seconds for a daemon to
// start and stop. Under kernel ZFS it holds nothing.
func HoldZFSDaemon(ctx context.Context) (release func() error, err error) {
	if err := CheckZFS(); err != nil {
		return nil, err
	}
	if !zfsFuse() {
		return func() error { return nil }, nil
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	holder, err := holdDaemon(ctx, "hold-"+hex.EncodeToString(suffix), "-")
	if err != nil {
		return nil, err
	}
	return func() error { return releaseDaemon(holder) }, nil
}

// ForTestZFS makes a pool for a test and tears it down when the test
// ends, also when it fails. When no pool can be made here the test is
// skipped as missing zfs, which LAYERLAB_REQUIRE turns into a failure.
func ForTestZFS(t TB, size int64) *ZFS {
	t.Helper()
	if err := CheckZFS(); err != nil {
		feature.Skip(t, feature.ZFS, "%v", err)
		return nil
	}
	z, err := NewZFS(context.Background(), os.TempDir(), size)
	if err != nil {
		t.Fatalf("zfs pool: %v", err)
	}
	t.Cleanup(func() {
		if err := z.Close(); err != nil {
			t.Errorf("tear down zfs pool: %v", err)
		}
	})
	return z
}

// The daemon's bookkeeping, all under ZFSStateDir and all done with the
// lock file held:
//
//	lock          flock(2)ed while deciding to start or stop
//	zfs-fuse.pid  the pid of a daemon a fixture started; absent when the
//	              daemon was there before (then no fixture stops it)
//	holders/NAME  one per live fixture (NAME is its pool) or hold:
//	              "PID STARTTIME SCRATCH"
func statePath(elem ...string) string {
	return filepath.Join(append([]string{ZFSStateDir}, elem...)...)
}

// lockState takes the state lock, waiting while another fixture has it.
func lockState(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(statePath("holders"), 0o700); err != nil {
		return nil, fmt.Errorf("zfs-fuse state: %w", err)
	}
	f, err := os.OpenFile(statePath("lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("zfs-fuse state: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing drops the lock
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for %s: %w", f.Name(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// holdDaemon makes sure a zfs-fuse daemon answers, starting one if none
// does, and records the caller as a holder. It returns the holder file.
func holdDaemon(ctx context.Context, pool, scratch string) (string, error) {
	unlock, err := lockState(ctx)
	if err != nil {
		return "", err
	}
	defer unlock()
	pruneHolders(ctx)
	if !daemonAnswers(ctx) {
		if err := startDaemon(ctx); err != nil {
			return "", err
		}
	}
	start, err := startTime(os.Getpid())
	if err != nil {
		return "", err
	}
	holder := statePath("holders", pool)
	line := fmt.Sprintf("%d %s %s\n", os.Getpid(), start, scratch)
	if err := os.WriteFile(holder, []byte(line), 0o600); err != nil {
		return "", fmt.Errorf("zfs-fuse state: %w", err)
	}
	return holder, nil
}

// releaseDaemon drops the holder and, when it was the last one, stops the
// daemon if a fixture started it.
func releaseDaemon(holder string) error {
	ctx := context.Background()
	unlock, err := lockState(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(holder); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("zfs-fuse state: %w", err)
	}
	if pruneHolders(ctx) > 0 {
		return nil
	}
	return stopDaemon()
}

// pruneHolders removes the holders whose process is gone, destroying the
// pool and files each left behind, and returns how many live ones remain.
func pruneHolders(ctx context.Context) int {
	entries, err := os.ReadDir(statePath("holders"))
	if err != nil {
		return 0
	}
	live := 0
	for _, e := range entries {
		path := statePath("holders", e.Name())
		b, err := os.ReadFile(path)
		f := strings.Fields(string(b))
		if err == nil && len(f) == 3 {
			if pid, err := strconv.Atoi(f[0]); err == nil {
				if st, err := startTime(pid); err == nil && st == f[1] {
					live++
					continue
				}
			}
		}
		// The process died without Close (a test timeout, a kill). Its
		// pool is gone already if the daemon went too.
		if strings.HasPrefix(e.Name(), "ll") {
			destroyPool(ctx, e.Name())
		}
		if len(f) == 3 && strings.HasPrefix(filepath.Base(f[2]), "loopfs-zfs-") {
			if points, err := mount.Under(f[2]); err == nil {
				for _, p := range points {
					mount.UnmountAll(p)
				}
			}
			os.RemoveAll(f[2])
		}
		os.Remove(path)
	}
	return live
}

// startTime is field 22 of /proc/PID/stat, which with the pid tells a
// process apart from a later one given the same pid.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f[19], nil
}

// daemonAnswers reports whether a zfs daemon serves the zfs commands.
func daemonAnswers(ctx context.Context) bool {
	_, err := command.Run(ctx, "zpool", "list", "-H", "-o", "name")
	return err == nil
}

// startDaemon starts zfs-fuse and waits until it answers. It runs in the
// foreground (-n) as our child (command.Background) rather than forking
// itself away, so that we reap it when it stops instead of leaving a
// defunct entry until init gets to it; in a session of its own, so a
// Ctrl-C to the tests does not kill it with pools mounted.
func startDaemon(ctx context.Context) error {
	if pid, ok := fixtureDaemon(); ok {
		// Ours, alive, yet not answering: starting or stuck. A second
		// one could not take the daemon lock anyway.
		if waitAnswer(ctx, nil) {
			return nil
		}
		return fmt.Errorf("zfs-fuse (pid %d, started by a fixture) does not answer on /var/run/zfs/zfs_socket; stop it with kill %d", pid, pid)
	}
	// --enable-xattr: without it every xattr call fails with EOPNOTSUPP,
	// and container images carry xattrs (security.capability); zfs-fuse
	// leaves it off by default for the cost on small I/O.
	// --no-kstat-mount: otherwise it mounts a statistics filesystem on
	// /zfs-kstat, one more mount to leak.
	n, exited, err := command.Background("zfs-fuse", "-n", "--enable-xattr", "--no-kstat-mount")
	if err != nil {
		return err
	}
	// Written by us, not by zfs-fuse's --pidfile: zfs-fuse refuses to
	// start while its pid file exists, even a stale one.
	pid := strconv.Itoa(n)
	if err := os.WriteFile(statePath("zfs-fuse.pid"), []byte(pid+"\n"), 0o600); err != nil {
		syscall.Kill(n, syscall.SIGKILL)
		return fmt.Errorf("zfs-fuse state: %w", err)
	}
	if waitAnswer(ctx, exited) {
		return nil
	}
	err = fmt.Errorf("zfs-fuse (pid %s) does not answer after %v (is another zfs-fuse holding /var/lock/zfs/zfs_lock? see syslog)", pid, zfsDaemonStart)
	return errors.Join(err, stopDaemon())
}

// waitAnswer waits until the daemon answers, or exited (if not nil)
// says it is gone.
func waitAnswer(ctx context.Context, exited <-chan error) bool {
	deadline := time.Now().Add(zfsDaemonStart)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if daemonAnswers(ctx) {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return false
}

// fixtureDaemon returns the pid of a live zfs-fuse a fixture started.
func fixtureDaemon() (int, bool) {
	b, err := os.ReadFile(statePath("zfs-fuse.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "zfs-fuse" {
		return 0, false
	}
	if state, _, ok := procState(pid); !ok || state == "Z" {
		return 0, false
	}
	return pid, true
}

// procState is the state letter and parent pid of pid, ok false when it
// is gone.
func procState(pid int) (state, ppid string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	f := strings.Fields(s[i+1:])
	if i < 0 || len(f) < 2 {
		return "", "", false
	}
	return f[0], f[1], true
}

// exited reports whether pid has ended. A defunct child of ours counts
// only once our Wait has reaped it, so none is left behind when we exit;
// anyone else's is reaped by its parent or init.
func exited(pid int) bool {
	state, ppid, ok := procState(pid)
	return !ok || state == "Z" && ppid != strconv.Itoa(os.Getpid())
}

// stopDaemon stops the daemon a fixture started, by the pid it recorded,
// and waits for it to go: it unmounts what it still serves on the way.
// A daemon no fixture started is left alone.
func stopDaemon() error {
	pid, ok := fixtureDaemon()
	if !ok {
		os.Remove(statePath("zfs-fuse.pid"))
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop zfs-fuse (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(zfsDaemonStop)
	for !exited(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("zfs-fuse (pid %d) still runs %v after SIGTERM; stop it with kill -9 %d and unmount its fuse.zfs mounts", pid, zfsDaemonStop, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	os.Remove(statePath("zfs-fuse.pid"))
	return nil
}

// ZFSForTest makes a zfs-fuse pool on a file below a shared directory
// (SharedForTest: its datasets, mounted by the zfs-fuse daemon, reach a
// daemon the test runs in a namespace with slave propagation) and
// destroys it when the test ends. Without zfs-fuse here the test is
// skipped as missing zfs, which LAYERLAB_REQUIRE turns into a failure.
func ZFSForTest(t TB) *ZFS {
	t.Helper()
	shared := SharedForTest(t)
	if err := CheckZFS(); err != nil {
		feature.Skip(t, feature.ZFS, "%v", err)
	}
	zfs, err := NewZFS(context.Background(), shared, 0)
	if err != nil {
		t.Fatalf("zfs pool: %v", err)
	}
	t.Cleanup(func() {
		if err := zfs.Close(); err != nil {
			t.Errorf("tear down zfs pool: %v", err)
		}
	})
	return zfs
}
