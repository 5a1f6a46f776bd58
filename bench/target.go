package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// backings lists the filesystems a driver is measured on when bench makes
// its own loop filesystems.
func backings(driver string) []string {
	switch driver {
	case "btrfs":
		return []string{"btrfs"}
	case "zfs":
		return []string{"zfs"}
	case "devicemapper", "aufs":
		return []string{"ext4"} // the home only; dm keeps data in its pool
	}
	return []string{"ext4", "xfs"}
}

// target is one driver opened on one backing store for the run.
type target struct {
	info   result.Target
	d      drivers.Driver
	home   string
	work   string // mount points, on the same filesystem
	store  *store // nil on a user-given --root
	device string // block device whose statistics count written bytes
	// written, when set, counts the bytes written to the backing store
	// where there is no block device (a zfs-fuse pool on a file).
	written func() (int64, error)
	n       int // for unique keys
}

// key returns a fresh snapshot key.
func (t *target) key(prefix string) string {
	t.n++
	return prefix + "-" + strconv.Itoa(t.n)
}

// newTarget makes (or, with root, uses) the backing store and opens the
// driver on it.
func newTarget(ctx context.Context, reg *drivers.Registry, driver, backing, scratch, root string, opts drivers.Options) (*target, error) {
	f, err := reg.Get(driver)
	if err != nil {
		return nil, err
	}
	t := &target{}
	base := root
	if root == "" {
		t.store, err = makeStore(ctx, scratch, backing)
		if err != nil {
			return nil, err
		}
		base = t.store.dir
	}
	t.home = filepath.Join(base, "layerlab-bench-"+driver)
	t.work = filepath.Join(base, "layerlab-bench-mnt-"+driver)
	fail := func(err error) (*target, error) {
		t.close()
		return nil, err
	}
	if err := os.MkdirAll(t.work, 0o755); err != nil {
		return fail(err)
	}
	if p := f.Probe(t.home); !p.Available() {
		return fail(fmt.Errorf("%s on %s: %w: %s", driver, backing, drivers.ErrUnavailable, p.Reason))
	}
	d, err := f.Open(ctx, t.home, opts)
	if err != nil {
		return fail(err)
	}
	t.d = d
	b, err := kernel.BackingOf(t.home)
	if err != nil {
		return fail(err)
	}
	caps := t.d.Capabilities()
	t.info = result.Target{
		ID: driver + "/" + b.Type, Driver: driver, Backing: b.Type, Device: b.Source,
		MountOptions: b.Options, DriverOptions: opts,
		Strategy: string(caps.Strategy), Granularity: string(caps.Granularity), Notes: caps.Notes,
	}
	if t.store != nil {
		t.info.Loop, t.info.DirectIO, t.written = true, t.store.directIO, t.store.written
		if t.store.device != "" {
			t.info.Device, t.device = t.store.device, t.store.device
		}
	} else if strings.HasPrefix(b.Source, "/dev/") {
		t.device = b.Source
	}
	return t, nil
}

// store is a backing filesystem bench made for a target.
type store struct {
	dir      string
	device   string // empty for a zfs pool on a file
	directIO bool
	written  func() (int64, error)
	close    func() error
}

// makeStore builds the loop-backed filesystem (or file-backed zfs pool) of
// type backing.
func makeStore(ctx context.Context, scratch, backing string) (*store, error) {
	const size = 4 << 30 // sparse; the largest workloads write about 1 GiB
	if backing == "zfs" {
		z, err := loopfs.NewZFS(ctx, scratch, size)
		if err != nil {
			return nil, err
		}
		st := &store{dir: z.Dir, close: z.Close}
		if z.Fuse {
			st.written = daemonWritten
		}
		return st, nil
	}
	fs, err := loopfs.New(ctx, scratch, backing, size, "")
	if err != nil {
		return nil, err
	}
	return &store{dir: fs.Dir, device: fs.Device, directIO: fs.DirectIO, close: fs.Close}, nil
}

// close unmounts what workloads left mounted, closes the driver and
// removes the backing store. Snapshots are not removed one by one: the
// whole filesystem goes.
func (t *target) close() error {
	var errs []error
	if points, err := mount.Under(t.work); err == nil {
		for _, p := range points {
			errs = append(errs, mount.UnmountAll(p))
		}
	}
	if t.d != nil {
		errs = append(errs, t.d.Close())
	}
	if t.store != nil {
		errs = append(errs, t.store.close())
	} else {
		errs = append(errs, os.RemoveAll(t.home), os.RemoveAll(t.work))
	}
	return errors.Join(errs...)
}

// writtenBytes reads the bytes the target's block device has written.
func (t *target) writtenBytes() (int64, error) {
	if t.written != nil {
		return t.written()
	}
	if t.device == "" {
		return 0, fmt.Errorf("%s: no block device to read statistics from: %w", t.info.ID, drivers.ErrUnavailable)
	}
	name := filepath.Base(t.device)
	if resolved, err := filepath.EvalSymlinks(t.device); err == nil {
		name = filepath.Base(resolved)
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/block", name, "stat"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return 0, fmt.Errorf("%s: unexpected block statistics %q", name, b)
	}
	sectors, err := strconv.ParseInt(f[6], 10, 64)
	return sectors * 512, err
}

// daemonWritten is what the zfs-fuse daemon has written to storage
// (/proc/PID/io write_bytes): the pool's vdev is a file it writes, so this
// counts the pool's writes, and only them while no other pool is busy.
func daemonWritten() (int64, error) {
	pids, err := kernel.Processes("zfs-fuse")
	if err != nil {
		return 0, err
	}
	for _, pid := range pids {
		io, err := os.ReadFile(filepath.Join("/proc", pid, "io"))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
				return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no zfs-fuse daemon to read write statistics from: %w", drivers.ErrUnavailable)
}
