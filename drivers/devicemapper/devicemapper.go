// Package devicemapper is the device-mapper thin provisioning driver, in
// the spirit of dockerd's devicemapper graphdriver and containerd's
// devmapper snapshotter: every snapshot is a thin device in one
// thin-pool, and a child is a dm-thin snapshot (create_snap) of its
// committed parent, so it shares all of the parent's blocks and a write
// to a shared block lands in a newly provisioned block that the child
// alone maps.
//
// The filesystem (ext4, or xfs) is made once per pool, on the base
// device (thin id 0); every snapshot without a parent is a snapshot of
// it, so no Prepare runs mkfs, except one asking for a smaller size than
// the base device's (a thin snapshot cannot be smaller than its origin),
// which gets a fresh thin device of its own. Snapshot n is thin id n (the
// metadata store's ids) and device POOL-snap-n.
//
// Active and view snapshots keep an active device for as long as they
// exist (activated again on demand after a reopen); a committed snapshot
// lives only in the pool: Commit deactivates it, so creating a snapshot
// of it needs no suspend. Close deactivates every device of the driver
// and removes the driver's own pool, which frees its loop devices.
//
// Options:
//
//	dm.thinpooldev=/dev/mapper/NAME  a thin-pool of the user's (direct-lvm style),
//	                                 left in place by Close; one home per pool
//	dm.datasize=10G                  the driver's own pool: sparse files data and
//	dm.metadatasize=128M             metadata in HOME/devmapper over loop devices,
//	dm.blocksize=64K                 fixed when the pool is made
//	dm.fs=ext4|xfs                   the base device's filesystem (xfs needs 300M)
//	dm.control=ioctl|dmsetup         how device-mapper is driven
//	size=10G                         the base device's size: every snapshot's limit,
//	                                 unless drivers.WithSize asks for more
package devicemapper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Name is the registry name of the driver.
const Name = "devicemapper"

// Factory returns the registry entry for devicemapper.
func Factory() drivers.Factory {
	return drivers.Factory{
		Name:         Name,
		Summary:      "device-mapper thin provisioning: each snapshot a dm-thin snapshot of its parent in one thin-pool (dockerd's devicemapper, containerd's devmapper)",
		Capabilities: capabilities(defaultBlockSize, "ext4", controlIoctl),
		Probe:        Probe,
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(New(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := parseOptions(o); return err },
	}
}

func capabilities(blockSize int64, fs, control string) drivers.Capabilities {
	return drivers.Capabilities{
		Strategy:    drivers.RedirectOnWrite,
		Granularity: drivers.GranularityBlock,
		Quota:       true,
		QuotaNote:   "base device size (thin device)",
		Kernel:      []string{"device-mapper thin-pool (dm-thin-pool)"},
		// A mounted thin device is removed by the kernel at its unmount.
		DeferredRemove: true,
		Notes: []string{
			fmt.Sprintf("thin blocks of %d KiB: a write that covers a shared block is redirected; a partial one copies the rest of the block first", blockSize>>10),
			fs + " made once, on the base device; a child has its parent's size, grown (never shrunk) when it asks for more",
			"usage counts the blocks a snapshot maps beyond those it inherited: rewriting an inherited block remaps it and is not counted",
			"device-mapper driven through " + control,
		},
	}
}

// Driver is core's snapshot bookkeeping over thin devices, plus what the
// pool holds.
type Driver struct {
	*core.Driver
	b *backend
}

// BackingUsed implements drivers.SpaceReporter: the pool's data blocks in
// use, times the block size. The home holds only metadata, and for a
// pool of the user's not even the data files.
func (d *Driver) BackingUsed(ctx context.Context) (int64, error) {
	if err := d.b.enter(); err != nil {
		return 0, err
	}
	defer d.b.mu.RUnlock()
	return d.b.pool.used()
}

type backend struct {
	cfg   config
	dir   string // home/devmapper
	ctl   control
	pool  *pool
	index *index
	lock  *os.File
	caps  drivers.Capabilities

	mu     sync.RWMutex // operations share it; Close takes it alone
	closed bool
	baseMu sync.Mutex // makes the base device
	actMu  sync.Mutex // activates devices on demand
}

// New opens a devicemapper driver with its state under home.
func New(ctx context.Context, home string, opts drivers.Options) (_ *Driver, err error) {
	c, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := core.CheckHome(Name, home); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	// Loop devices report their files by resolved path.
	if home, err = filepath.EvalSymlinks(home); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	b := &backend{cfg: c, dir: filepath.Join(home, "devmapper")}
	defer func() {
		switch {
		case err == nil || b == nil:
		case b.pool != nil:
			b.Close() // the pool and its devices go, as they came
		default:
			b.release()
		}
	}()
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if b.lock, err = lockDir(b.dir); err != nil {
		return nil, err
	}
	// withMount's private mount points: a crash while one was mounted
	// leaves it, holding its thin device open.
	if err := core.SweepScratch(b.dir, "mnt-"); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if c.control == controlDmsetup {
		b.ctl = dmsetupControl{}
	} else {
		ctl, err := openIoctlControl()
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %s (%w)", Name, drivers.ErrUnavailable, noThinPool, err)
		}
		b.ctl = ctl
	}
	if c.thinPool != "" {
		b.pool, err = openUserPool(b.ctl, c.thinPool)
	} else {
		b.pool, err = openOwnPool(b.ctl, b.dir, c)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if b.index, err = newIndex(filepath.Join(b.dir, "devices")); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	b.caps = capabilities(b.pool.blockSize, c.fs, b.ctl.Kind())
	d, err := core.Open(ctx, Name, home, b) // closes b on failure
	if err != nil {
		b = nil
		return nil, err
	}
	return &Driver{Driver: d, b: b}, nil
}

// lockDir keeps a second process from driving the same pool: the
// metadata store would refuse it, but only after its pool setup ran.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %s is in use by another open driver (%v); close it first: %w", Name, dir, err, drivers.ErrUnavailable)
	}
	return f, nil
}

// enter starts an operation: it fails once the driver is closed, and
// keeps Close waiting until the operation ends (mu.RUnlock).
func (b *backend) enter() error {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return fmt.Errorf("%s: %w", Name, drivers.ErrClosed)
	}
	return nil
}

func (b *backend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	if err := b.enter(); err != nil {
		return nil, err
	}
	defer b.mu.RUnlock()
	d, err := b.device(s)
	if err != nil {
		return nil, err
	}
	if _, err := b.active(d); err != nil {
		return nil, err
	}
	return []drivers.Mount{{Type: d.FS, Source: devPath(b.pool.thin(d.ID)), Options: mountOptions(d.FS, d.ReadOnly)}}, nil
}

// Commit measures the device and deactivates it; it stays in the pool as
// the origin of the children to come.
func (b *backend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	if err := b.enter(); err != nil {
		return drivers.Usage{}, err
	}
	defer b.mu.RUnlock()
	d, err := b.device(s)
	if err != nil {
		return drivers.Usage{}, err
	}
	info, err := b.active(d)
	if err != nil {
		return drivers.Usage{}, err
	}
	name := b.pool.thin(d.ID)
	if info.OpenCount > 0 {
		return drivers.Usage{}, fmt.Errorf("device %s is open (mounted at %q?); unmount the snapshot before committing it: %w", name, mountpoint(info.Major, info.Minor), drivers.ErrFailedPrecondition)
	}
	if err := b.settle(name, d.FS); err != nil {
		return drivers.Usage{}, err
	}
	bytes, inodes, err := b.measure(name, info)
	if err != nil {
		return drivers.Usage{}, err
	}
	if err := b.deactivate(name); err != nil {
		if errors.Is(err, unix.EBUSY) {
			err = fmt.Errorf("%w: unmount the snapshot before committing it: %w", err, drivers.ErrFailedPrecondition)
		}
		return drivers.Usage{}, err
	}
	d.Bytes, d.Inodes, d.Committed = bytes, inodes, true
	return usage(d, bytes, inodes), b.index.put(d)
}

func (b *backend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	if err := b.enter(); err != nil {
		return drivers.Usage{}, err
	}
	defer b.mu.RUnlock()
	d, err := b.device(s)
	if err != nil {
		return drivers.Usage{}, err
	}
	info, err := b.active(d)
	if err != nil {
		return drivers.Usage{}, err
	}
	bytes, inodes, err := b.measure(b.pool.thin(d.ID), info)
	return usage(d, bytes, inodes), err
}

func (b *backend) Remove(ctx context.Context, id string) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.mu.RUnlock()
	n, err := thinID(id)
	if err != nil {
		return err
	}
	return b.destroy(n)
}

// destroy deactivates thin device id, deletes it from the pool and drops
// its file. A mounted device is removed by the kernel at its unmount
// (deferred removal) and keeps its thin id and its file, marked removed,
// until the sweep of a later open or Close finds it gone.
func (b *backend) destroy(id uint32) error {
	name := b.pool.thin(id)
	pending := false
	info, err := b.ctl.Info(name)
	switch {
	case errors.Is(err, unix.ENXIO): // not active
	case err != nil:
		return err
	case info.OpenCount > 0 && mountpoint(info.Major, info.Minor) != "":
		pending, err = b.ctl.Remove(name, true)
	default: // open for a moment at most, by a probe such as blkid
		if err = b.deactivate(name); errors.Is(err, unix.EBUSY) {
			pending, err = b.ctl.Remove(name, true)
		}
	}
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return err
	}
	if !pending {
		deleted, err := b.deleteThin(id)
		if err != nil {
			return err
		}
		if deleted {
			return b.index.remove(id)
		}
	}
	d, err := b.index.get(id)
	if err != nil {
		d = device{ID: id}
	}
	d.Removed = true
	return b.index.put(d)
}

// deleteThin deletes thin id from the pool and says whether it did. The
// pool refuses (EBUSY) while a device has the id open: one still in the
// name table (mounted) is left for a later sweep, one gone from it is
// being torn down by the kernel's deferred-remove work and is waited for.
func (b *backend) deleteThin(id uint32) (bool, error) {
	for wait := time.Millisecond; ; wait *= 2 {
		err := b.pool.message("delete %d", id)
		if err == nil || errors.Is(err, unix.ENODATA) {
			return true, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return false, err
		}
		if _, ierr := b.ctl.Info(b.pool.thin(id)); ierr == nil || wait > time.Second {
			return false, nil
		}
		time.Sleep(wait)
	}
}

func (b *backend) IDs(ctx context.Context) ([]string, error) {
	ids, err := b.index.ids()
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatUint(uint64(id), 10)
	}
	return out, nil
}

func (b *backend) Capabilities() drivers.Capabilities { return b.caps }

// Close deactivates every device of the driver (deferred for those still
// mounted), deletes the thin devices of removed snapshots that waited for
// their last user, and removes the driver's own pool (deferred too).
func (b *backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	names, err := b.ctl.List()
	errs = append(errs, err)
	for _, n := range names {
		if b.ours(n) {
			if _, err := b.ctl.Remove(n, true); err != nil && !errors.Is(err, unix.ENXIO) {
				errs = append(errs, err)
			}
		}
	}
	var ids []uint32
	if b.index != nil {
		ids, err = b.index.ids()
		errs = append(errs, err)
	}
	for _, id := range ids {
		if d, err := b.index.get(id); err == nil && d.Removed {
			switch deleted, err := b.deleteThin(id); {
			case err != nil:
				errs = append(errs, err)
			case deleted:
				errs = append(errs, b.index.remove(id))
			}
		}
	}
	errs = append(errs, b.pool.close())
	b.sweepNodes()
	errs = append(errs, b.release())
	return errors.Join(errs...)
}

// release closes the control and the lock.
func (b *backend) release() error {
	var errs []error
	if b.ctl != nil {
		errs = append(errs, b.ctl.Close())
	}
	if b.lock != nil {
		errs = append(errs, b.lock.Close())
	}
	return errors.Join(errs...)
}

// ours reports whether mapped device name is one of the driver's thin
// devices: exactly POOL-base or POOL-snap-ID, since in a pool of the
// user's (LVM's, say) other devices share the pool's name as a prefix.
func (b *backend) ours(name string) bool {
	if name == b.baseName() {
		return true
	}
	id, ok := strings.CutPrefix(name, b.pool.name+"-snap-")
	_, err := strconv.ParseUint(id, 10, 32)
	return ok && err == nil
}

// sweepNodes deletes the /dev/mapper nodes of the driver's devices that
// are gone: a device removed while open (deferred) leaves its node.
func (b *backend) sweepNodes() {
	entries, _ := os.ReadDir(mapperDir)
	for _, e := range entries {
		if b.ours(e.Name()) {
			if _, err := b.ctl.Info(e.Name()); errors.Is(err, unix.ENXIO) {
				removeNode(e.Name())
			}
		}
	}
}
