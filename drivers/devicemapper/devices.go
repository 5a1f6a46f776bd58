package devicemapper

// Making thin devices: snapshots of the base device or of a parent,
// fresh devices for small base snapshots, and the base device itself;
// activating them and measuring what they hold.

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// thinID is the thin device id of snapshot id.
func thinID(id string) (uint32, error) {
	n, err := strconv.ParseUint(id, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("snapshot id %q is not a thin device id: %w", id, drivers.ErrInvalidArgument)
	}
	if n > maxThinID {
		return 0, fmt.Errorf("snapshot id %d is past dm-thin's 24-bit device ids (this home has used them all); use a new home: %w", n, drivers.ErrUnavailable)
	}
	return uint32(n), nil
}

// roundSize rounds a requested size up to whole 4 KiB filesystem blocks.
func roundSize(n int64) int64 { return (n + 4095) &^ 4095 }

func (b *backend) Create(ctx context.Context, s storage.Snapshot) error {
	if err := b.enter(); err != nil {
		return err
	}
	defer b.mu.RUnlock()
	id, err := thinID(s.ID)
	if err != nil {
		return err
	}
	var origin device
	var originName string
	if len(s.ParentIDs) == 0 {
		want := b.cfg.baseSize
		if s.Kind == drivers.KindActive {
			if want, err = drivers.SizeOf(s.Labels, want); err != nil {
				return err
			}
		}
		if want = roundSize(want); want < b.cfg.baseSize {
			return b.createFresh(ctx, id, want)
		}
		if origin, err = b.base(ctx); err != nil {
			return err
		}
		originName = b.baseName()
	} else {
		pid, err := thinID(s.ParentIDs[0])
		if err != nil {
			return err
		}
		if origin, err = b.index.get(pid); err != nil {
			return fmt.Errorf("parent thin device: %w", err)
		}
		originName = b.pool.thin(pid)
	}
	size := origin.Size
	if s.Kind == drivers.KindActive {
		if size, err = drivers.SizeOf(s.Labels, size); err != nil {
			return err
		}
		if size = roundSize(size); size < origin.Size {
			return fmt.Errorf("size %d: %w: a thin snapshot cannot be smaller than its parent's %d bytes; ask for at least that, or prepare a base snapshot", size, drivers.ErrInvalidArgument, origin.Size)
		}
	}
	d := device{ID: id, Size: size, FS: origin.FS, ReadOnly: s.Kind == drivers.KindView, BaseBytes: origin.Bytes, BaseInodes: origin.Inodes}
	if err := b.index.create(d); err != nil {
		return err
	}
	err = b.snapshot(id, origin.ID, originName)
	if errors.Is(err, unix.EEXIST) {
		return b.taken(err, id)
	}
	if err == nil {
		_, err = b.activate(d)
	}
	if err == nil && size > origin.Size {
		err = b.grow(ctx, d)
	}
	if err != nil {
		return errors.Join(err, b.destroy(id))
	}
	return nil
}

// snapshot makes thin device id a snapshot of origin. dm-thin wants an
// active origin suspended meanwhile, so that no write to it is in flight;
// committed devices are not active, so this is the rare case (a device a
// crash left active).
func (b *backend) snapshot(id, origin uint32, originName string) error {
	info, err := b.ctl.Info(originName)
	suspended := false
	if err == nil && !info.Suspended {
		if err := b.ctl.Suspend(originName); err != nil {
			return err
		}
		suspended = true
	}
	err = b.pool.message("create_snap %d %d", id, origin)
	if suspended {
		err = errors.Join(err, b.ctl.Resume(originName))
	}
	return err
}

// taken explains EEXIST from create_snap or create_thin and drops the
// device's file, leaving the thin device alone: the id is new to this
// home, so the device is someone else's.
func (b *backend) taken(err error, id uint32) error {
	return errors.Join(fmt.Errorf("%w: thin id %d exists in pool %s, but no snapshot of this home has it: the pool holds devices of another home or program; give each home a pool of its own: %w",
		err, id, b.pool.name, drivers.ErrFailedPrecondition), b.index.remove(id))
}

// grow resizes a new device's filesystem to the device and counts what
// that wrote as part of the device's baseline, not its usage.
func (b *backend) grow(ctx context.Context, d device) error {
	name := b.pool.thin(d.ID)
	if err := grow(ctx, devPath(name), d.FS, b.dir); err != nil {
		return err
	}
	info, err := b.ctl.Info(name)
	if err != nil {
		return err
	}
	if d.BaseBytes, d.BaseInodes, err = b.measure(name, info); err != nil {
		return err
	}
	return b.index.put(d)
}

// createFresh makes active snapshot id a new thin device of its own with
// a new filesystem, for a base snapshot smaller than the base device.
func (b *backend) createFresh(ctx context.Context, id uint32, size int64) error {
	d := device{ID: id, Size: size, FS: b.cfg.fs}
	if err := b.index.create(d); err != nil {
		return err
	}
	err := b.pool.message("create_thin %d", id)
	if errors.Is(err, unix.EEXIST) {
		return b.taken(err, id)
	}
	if err == nil {
		d.BaseBytes, d.BaseInodes, err = b.format(ctx, b.pool.thin(id), id, size, false)
	}
	if err == nil {
		err = b.index.put(d)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("a %d-byte %s: %w", size, b.cfg.fs, err), b.destroy(id))
	}
	return nil
}

// format activates new thin device id as name, makes its filesystem and
// returns what it then holds; deactivate leaves it inactive.
func (b *backend) format(ctx context.Context, name string, id uint32, size int64, deactivate bool) (int64, int64, error) {
	info, err := b.ctl.Create(name, thinTarget(size, b.pool.dev, id), false)
	if err != nil {
		return 0, 0, err
	}
	if err := mkfs(ctx, b.cfg.fs, devPath(name), b.pool.zeroes); err != nil {
		return 0, 0, err
	}
	if err := withMount(devPath(name), b.cfg.fs, b.dir, prepareRoot); err != nil {
		return 0, 0, err
	}
	bytes, inodes, err := b.measure(name, info)
	if err == nil && deactivate {
		err = b.deactivate(name)
	}
	return bytes, inodes, err
}

func (b *backend) baseName() string { return b.pool.name + "-base" }

// base returns the base device, thin id 0, making it on first use or
// when its size or filesystem no longer match the options: thin
// snapshots do not depend on their origin, so an old base can go.
func (b *backend) base(ctx context.Context) (device, error) {
	b.baseMu.Lock()
	defer b.baseMu.Unlock()
	path := filepath.Join(b.dir, "base.json")
	var d device
	err := readJSON(path, &d)
	if err == nil && d.Committed && d.Size == b.cfg.baseSize && d.FS == b.cfg.fs {
		return d, nil
	}
	if err != nil && !errors.Is(err, drivers.ErrNotFound) {
		return d, err
	}
	name := b.baseName()
	if _, err := b.ctl.Remove(name, false); err != nil && !errors.Is(err, unix.ENXIO) {
		return d, err
	}
	if err := b.pool.message("delete 0"); err != nil && !errors.Is(err, unix.ENODATA) {
		return d, err
	}
	d = device{ID: 0, Size: b.cfg.baseSize, FS: b.cfg.fs, Committed: true}
	if err := b.pool.message("create_thin 0"); err != nil {
		return d, err
	}
	if d.Bytes, d.Inodes, err = b.format(ctx, name, 0, d.Size, true); err != nil {
		return d, fmt.Errorf("make the base device: %w", err)
	}
	return d, writeJSON(path, d)
}

// activate makes the device of d; one that exists already is kept.
func (b *backend) activate(d device) (devInfo, error) {
	name := b.pool.thin(d.ID)
	info, err := b.ctl.Create(name, thinTarget(d.Size, b.pool.dev, d.ID), d.ReadOnly)
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		if info, ierr := b.ctl.Info(name); ierr == nil {
			return info, ensureNode(name, info)
		}
	}
	return info, err
}

// active returns the device of d, activating it if it is not (after a
// reopen: Close deactivates everything).
func (b *backend) active(d device) (devInfo, error) {
	name := b.pool.thin(d.ID)
	info, err := b.ctl.Info(name)
	if err == nil {
		return info, ensureNode(name, info)
	}
	if !errors.Is(err, unix.ENXIO) {
		return info, err
	}
	b.actMu.Lock()
	defer b.actMu.Unlock()
	return b.activate(d)
}

// deactivate removes device name, which must not be open; EBUSY is
// retried for a while, as dmsetup --retry does, for a probe (blkid, udev)
// that opened the device for a moment.
func (b *backend) deactivate(name string) error {
	for wait := time.Millisecond; ; wait *= 2 {
		_, err := b.ctl.Remove(name, false)
		if err == nil || errors.Is(err, unix.ENXIO) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || wait > time.Second {
			return err
		}
		time.Sleep(wait)
	}
}

// measure returns the bytes device name maps and the inodes its
// filesystem uses, flushing it first if it is mounted.
func (b *backend) measure(name string, info devInfo) (int64, int64, error) {
	mp := ""
	if info.OpenCount > 0 { // a mounted filesystem holds its device open
		mp = mountpoint(info.Major, info.Minor)
	}
	if mp != "" {
		if err := mount.SyncFS(mp); err != nil {
			return 0, 0, err
		}
	}
	bytes, err := b.pool.mapped(name)
	if err != nil {
		return 0, 0, err
	}
	inodes, err := usedInodes(devPath(name), mp)
	return bytes, inodes, err
}

func usage(d device, bytes, inodes int64) drivers.Usage {
	return drivers.Usage{Size: max(bytes-d.BaseBytes, 0), Inodes: max(inodes-d.BaseInodes, 0)}
}

func (b *backend) device(s storage.Snapshot) (device, error) {
	id, err := thinID(s.ID)
	if err != nil {
		return device{}, err
	}
	return b.index.get(id)
}

// settle makes sure the unmounted filesystem on device name is clean: an
// ext4 that a crash left mounted needs its journal replayed, or a view of
// it, a read-only device, would not mount. Mounting it once replays it.
// xfs keeps the state of its log out of its superblock, so a dirty xfs is
// not caught here: its children replay the log on their first mount, its
// views fail to mount.
func (b *backend) settle(name, fstype string) error {
	sb, err := readSuperblock(devPath(name))
	if err != nil || !needsRecovery(sb) {
		return err
	}
	return withMount(devPath(name), fstype, b.dir, func(string) error { return nil })
}
