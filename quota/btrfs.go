package quota

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/dennwc/btrfs"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
)

// The qgroup ioctls are written out here because github.com/dennwc/btrfs,
// which the btrfs driver (and this file, for subvolumes) goes through,
// keeps its quota and tree-search calls unexported: this file is the one
// place layerlab issues btrfs ioctls of its own.
//
// Constants from linux/btrfs.h and linux/btrfs_tree.h that golang.org/x/sys
// does not carry. The request numbers use the asm-generic _IOC encoding
// (x86, arm, riscv); TestBtrfsStructLayout pins them.
const (
	btrfsIocTreeSearch      = 0xd0009411 // _IOWR(0x94, 17, struct btrfs_ioctl_search_args)
	btrfsIocQuotaCtl        = 0xc0109428 // _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args)
	btrfsIocQgroupLimit     = 0x8030942b // _IOR(0x94, 43, struct btrfs_ioctl_qgroup_limit_args)
	btrfsIocQuotaRescanWait = 0x0000942e // _IO(0x94, 46)

	btrfsQuotaCtlEnable     = 1
	btrfsQuotaTree          = 8   // BTRFS_QUOTA_TREE_OBJECTID
	btrfsQgroupStatusKey    = 240 // item (0, 240, 0)
	btrfsQgroupInfoKey      = 242 // item (0, 242, qgroupid)
	btrfsQgroupLimitKey     = 244 // item (0, 244, qgroupid)
	btrfsStatusRescan       = 1 << 1
	btrfsStatusInconsistent = 1 << 2
	btrfsLimitMaxRfer       = 1 << 0
	btrfsLimitMaxExcl       = 1 << 1
	btrfsLimitClear         = ^uint64(0) // CLEAR_VALUE: a limit of "none"
)

// btrfsSearchArgs is struct btrfs_ioctl_search_args: a 104-byte key and a
// buffer of (header, item) pairs filling the rest of 4 KiB.
type btrfsSearchArgs struct {
	TreeID, MinObjectID, MaxObjectID uint64
	MinOffset, MaxOffset             uint64
	MinTransID, MaxTransID           uint64
	MinType, MaxType, NrItems, _     uint32
	_                                [4]uint64
	Buf                              [4096 - 104]byte
}

// btrfsSearchHeader is struct btrfs_ioctl_search_header, in host order.
type btrfsSearchHeader struct {
	TransID, ObjectID, Offset uint64
	Type, Len                 uint32
}

// btrfsQgroupLimitArgs is struct btrfs_ioctl_qgroup_limit_args.
type btrfsQgroupLimitArgs struct {
	QgroupID                                  uint64
	Flags, MaxRfer, MaxExcl, RsvRfer, RsvExcl uint64
}

// btrfsQuotaCtlArgs is struct btrfs_ioctl_quota_ctl_args.
type btrfsQuotaCtlArgs struct {
	Cmd, Status uint64
}

// Btrfs limits subvolumes with btrfs qgroups: each subvolume has the
// level-0 qgroup 0/<subvolume id>, and Set limits its exclusive bytes.
// Exclusive, not referenced: a snapshot of a large parent references all
// of the parent's extents, so a referenced limit would charge it for data
// it shares; the exclusive count is what the snapshot itself wrote.
//
// The kernel updates qgroup numbers when it commits a transaction, so Get
// syncs the filesystem first.
type Btrfs struct {
	dir string // any directory on the filesystem; quota is per filesystem
}

// NewBtrfs returns a controller for the btrfs filesystem holding dir, or
// an ErrUnsupported error naming the filesystem found there. It does not
// turn quota on: that costs every later write some accounting, so Set
// does it when a limit is first asked for.
func NewBtrfs(dir string) (*Btrfs, error) {
	b, err := kernel.BackingOf(dir)
	if err != nil {
		return nil, err
	}
	if b.Magic != kernel.MagicBtrfs {
		return nil, fmt.Errorf("%s is on %s, not btrfs: qgroups need btrfs: %w", dir, b.Type, ErrUnsupported)
	}
	return &Btrfs{dir: b.Path}, nil
}

// Mechanism implements Controller.
func (b *Btrfs) Mechanism() string { return "btrfs qgroup" }

// Enabled reports whether quota is on for the filesystem.
func (b *Btrfs) Enabled() (bool, error) {
	f, err := os.Open(b.dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = btrfsStatus(f)
	if errors.Is(err, unix.ENOENT) { // no quota tree
		return false, nil
	}
	return err == nil, err
}

// btrfsStatus reads the flags of the qgroup status item.
func btrfsStatus(f *os.File) (uint64, error) {
	item, err := btrfsSearch(f, btrfsQgroupStatusKey, 0)
	if err != nil {
		return 0, err
	}
	if len(item) < 24 {
		return 0, fmt.Errorf("qgroup status item of %d bytes: %w", len(item), unix.EIO)
	}
	return binary.LittleEndian.Uint64(item[16:]), nil
}

// Enable turns quota on for the filesystem, if it is not on yet, and waits
// for the rescan that counts what is already there.
func (b *Btrfs) Enable(ctx context.Context) error {
	on, err := b.Enabled()
	if err != nil || on {
		return err
	}
	f, err := os.Open(b.dir)
	if err != nil {
		return err
	}
	defer f.Close()
	args := btrfsQuotaCtlArgs{Cmd: btrfsQuotaCtlEnable}
	if err := ioctl(f, btrfsIocQuotaCtl, unsafe.Pointer(&args)); err != nil {
		return fmt.Errorf("enable btrfs quota on %s: %w", b.dir, err)
	}
	if err := ioctl(f, btrfsIocQuotaRescanWait, nil); err != nil {
		return fmt.Errorf("wait for the qgroup rescan on %s: %w", b.dir, err)
	}
	return nil
}

// openSubvolume opens path and returns its subvolume id, refusing a path
// that is not the root of a btrfs subvolume: qgroups count whole
// subvolumes.
func openSubvolume(path string) (*os.File, uint64, error) {
	sub, err := btrfs.Open(path, true)
	var notSub btrfs.ErrNotBtrfs
	if errors.As(err, &notSub) {
		return nil, 0, fmt.Errorf("%s is not a btrfs subvolume; qgroup limits apply to whole subvolumes (btrfs subvolume create): %w", path, drivers.ErrInvalidArgument)
	}
	if err != nil {
		return nil, 0, err
	}
	id, err := sub.SubVolumeID()
	sub.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("subvolume id of %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	return f, id, nil
}

// Set implements Controller: it turns quota on if needed and limits the
// exclusive bytes of t.Path's qgroup; a limit of 0 or less clears it.
func (b *Btrfs) Set(ctx context.Context, t Target, limit int64) error {
	if limit <= 0 {
		return b.Clear(ctx, t)
	}
	if err := b.Enable(ctx); err != nil {
		return err
	}
	return b.limit(t.Path, btrfsLimitMaxExcl, uint64(limit))
}

// limit sets the limits named by flags to v on the qgroup of path.
func (b *Btrfs) limit(path string, flags, v uint64) error {
	f, id, err := openSubvolume(path)
	if err != nil {
		return err
	}
	defer f.Close()
	args := btrfsQgroupLimitArgs{QgroupID: id, Flags: flags}
	if flags&btrfsLimitMaxRfer != 0 {
		args.MaxRfer = v
	}
	if flags&btrfsLimitMaxExcl != 0 {
		args.MaxExcl = v
	}
	err = ioctl(f, btrfsIocQgroupLimit, unsafe.Pointer(&args))
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s has no qgroup 0/%d to limit; create it with btrfs qgroup create 0/%d %s: %w", path, id, id, path, drivers.ErrFailedPrecondition)
	}
	if err != nil {
		return fmt.Errorf("limit qgroup 0/%d (%s): %w", id, path, err)
	}
	return nil
}

// Get implements Controller: Used is the qgroup's exclusive bytes, Limit
// its exclusive limit (or, if only that is set, its referenced one).
func (b *Btrfs) Get(ctx context.Context, t Target) (Quota, error) {
	f, id, err := openSubvolume(t.Path)
	if err != nil {
		return Quota{}, err
	}
	defer f.Close()
	status, err := btrfsStatus(f)
	if errors.Is(err, unix.ENOENT) {
		return Quota{}, fmt.Errorf("btrfs quota is off on the filesystem of %s; set a limit first (or run btrfs quota enable): %w", t.Path, drivers.ErrFailedPrecondition)
	}
	if err != nil {
		return Quota{}, fmt.Errorf("qgroup status of %s: %w", t.Path, err)
	}
	if status&btrfsStatusRescan != 0 {
		if err := ioctl(f, btrfsIocQuotaRescanWait, nil); err != nil {
			return Quota{}, fmt.Errorf("wait for the qgroup rescan of %s: %w", t.Path, err)
		}
	}
	if status&btrfsStatusInconsistent != 0 {
		return Quota{}, fmt.Errorf("qgroup numbers of %s are inconsistent; run btrfs quota rescan -w on it: %w", t.Path, drivers.ErrFailedPrecondition)
	}
	// The counts change at transaction commit; commit now so they include
	// what was just written.
	if err := mount.SyncFS(t.Path); err != nil {
		return Quota{}, err
	}
	info, err := btrfsSearch(f, btrfsQgroupInfoKey, id)
	if errors.Is(err, unix.ENOENT) {
		return Quota{}, fmt.Errorf("%s has no qgroup 0/%d; create it with btrfs qgroup create 0/%d %s and rescan: %w", t.Path, id, id, t.Path, drivers.ErrFailedPrecondition)
	}
	if err != nil {
		return Quota{}, fmt.Errorf("qgroup 0/%d (%s): %w", id, t.Path, err)
	}
	if len(info) < 32 {
		return Quota{}, fmt.Errorf("qgroup 0/%d (%s): info item of %d bytes: %w", id, t.Path, len(info), unix.EIO)
	}
	q := Quota{Used: int64(binary.LittleEndian.Uint64(info[24:]))}
	lim, err := btrfsSearch(f, btrfsQgroupLimitKey, id)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return Quota{}, fmt.Errorf("limit of qgroup 0/%d (%s): %w", id, t.Path, err)
	}
	if len(lim) >= 24 {
		flags := binary.LittleEndian.Uint64(lim)
		switch {
		case flags&btrfsLimitMaxExcl != 0:
			q.Limit = int64(binary.LittleEndian.Uint64(lim[16:]))
		case flags&btrfsLimitMaxRfer != 0:
			q.Limit = int64(binary.LittleEndian.Uint64(lim[8:]))
		}
	}
	return q, nil
}

// Clear implements Controller: it removes both the exclusive and the
// referenced limit. With quota off there is no limit to clear.
func (b *Btrfs) Clear(ctx context.Context, t Target) error {
	on, err := b.Enabled()
	if err != nil || !on {
		return err
	}
	err = b.limit(t.Path, btrfsLimitMaxExcl|btrfsLimitMaxRfer, btrfsLimitClear)
	if errors.Is(err, drivers.ErrFailedPrecondition) {
		return nil // no qgroup, so no limit
	}
	return err
}

// btrfsSearch returns the body of the quota-tree item (0, typ, offset), or
// an ENOENT error when there is none (or no quota tree: quota is off).
func btrfsSearch(f *os.File, typ uint32, offset uint64) ([]byte, error) {
	args := btrfsSearchArgs{
		TreeID:     btrfsQuotaTree,
		MinOffset:  offset,
		MaxOffset:  offset,
		MaxTransID: ^uint64(0),
		MinType:    typ,
		MaxType:    typ,
		NrItems:    1,
	}
	if err := ioctl(f, btrfsIocTreeSearch, unsafe.Pointer(&args)); err != nil {
		return nil, err
	}
	if args.NrItems == 0 {
		return nil, unix.ENOENT
	}
	var h btrfsSearchHeader
	hsize := int(unsafe.Sizeof(h))
	h = *(*btrfsSearchHeader)(unsafe.Pointer(&args.Buf[0]))
	if h.ObjectID != 0 || h.Type != typ || h.Offset != offset || hsize+int(h.Len) > len(args.Buf) {
		return nil, unix.ENOENT
	}
	return append([]byte(nil), args.Buf[hsize:hsize+int(h.Len)]...), nil
}
