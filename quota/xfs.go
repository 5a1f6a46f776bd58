package quota

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// Constants from linux/fs.h, linux/quota.h and linux/dqblk_xfs.h that
// golang.org/x/sys does not carry.
const (
	fsIocFsgetxattr     = 0x801c581f // _IOR('X', 31, struct fsxattr)
	fsIocFssetxattr     = 0x401c5820 // _IOW('X', 32, struct fsxattr)
	fsXflagProjinherit  = 0x00000200
	prjQuota            = 2
	qXGetQuota          = 0x5803 // XQM_CMD(3)
	qXSetQLim           = 0x5804 // XQM_CMD(4)
	qXGetQStat          = 0x5805 // XQM_CMD(5)
	fsDquotVersion      = 1
	fsProjQuota         = 2
	fsDqBsoft           = 1 << 2
	fsDqBhard           = 1 << 3
	xfsQuotaPdqEnforced = 1 << 5 // FS_QUOTA_PDQ_ENFD
	basicBlock          = 512    // quota block counts are in 512-byte units
)

func qcmd(cmd, typ int) uintptr { return uintptr(cmd<<8 | typ&0xff) }

// fsxattr is struct fsxattr.
type fsxattr struct {
	Xflags     uint32
	Extsize    uint32
	Nextents   uint32
	Projid     uint32
	Cowextsize uint32
	Pad        [8]byte
}

// diskQuota is struct fs_disk_quota (112 bytes).
type diskQuota struct {
	Version      int8
	Flags        int8
	Fieldmask    uint16
	ID           uint32
	BlkSoftlimit uint64
	BlkHardlimit uint64
	InoSoftlimit uint64
	InoHardlimit uint64
	Bcount       uint64
	Icount       uint64
	Itimer       int32
	Btimer       int32
	Iwarns       uint16
	Bwarns       uint16
	ItimerHi     int8
	BtimerHi     int8
	RtbtimerHi   int8
	Padding2     int8
	RtbSoftlimit uint64
	RtbHardlimit uint64
	Rtbcount     uint64
	Rtbtimer     int32
	Rtbwarns     uint16
	Padding3     int16
	Padding4     [8]byte
}

// fsQuotaStat is the start of struct fs_quota_stat; only the flags are read.
type fsQuotaStat struct {
	Version int8
	Flags   uint16
	Pad     [256]byte
}

// XFS limits directories with xfs project quota: each snapshot's upper
// directory gets a project id with PROJINHERIT, so everything created
// under it counts against that project's block limit.
type XFS struct {
	device string // the block device quotactl(2) addresses
	mount  string
}

// NewXFS returns a controller for the xfs filesystem holding dir, or an
// ErrUnsupported error that says what is missing.
func NewXFS(dir string) (*XFS, error) {
	b, err := kernel.BackingOf(dir)
	if err != nil {
		return nil, err
	}
	if b.Type != "xfs" {
		return nil, fmt.Errorf("%s is on %s: project quota needs xfs mounted with prjquota: %w", dir, b.Type, ErrUnsupported)
	}
	if !hasOption(b.Options, "prjquota", "pquota", "pqnoenforce") {
		if _, err := os.Stat("/proc/fs/xfs/xqm"); err != nil {
			return nil, fmt.Errorf("xfs at %s: this kernel was built without xfs quota support (CONFIG_XFS_QUOTA); the qemu test guest (`make vm-test`) and the overlay2-xfs Vagrant VM have it: %w", b.Path, ErrUnsupported)
		}
		return nil, fmt.Errorf("xfs at %s is mounted without prjquota; remount it with -o prjquota (in fstab; xfs cannot turn quota on by remount): %w", b.Path, ErrUnsupported)
	}
	x := &XFS{device: b.Source, mount: b.Path}
	var st fsQuotaStat
	if err := x.quotactl(qXGetQStat, 0, unsafe.Pointer(&st)); err != nil {
		return nil, fmt.Errorf("xfs at %s: read quota state: %w", b.Path, err)
	}
	if st.Flags&xfsQuotaPdqEnforced == 0 {
		return nil, fmt.Errorf("xfs at %s accounts project quota but does not enforce it (pqnoenforce); remount with prjquota: %w", b.Path, ErrUnsupported)
	}
	return x, nil
}

func hasOption(opts string, names ...string) bool {
	for _, o := range strings.Split(opts, ",") {
		for _, n := range names {
			if o == n {
				return true
			}
		}
	}
	return false
}

func (x *XFS) quotactl(cmd int, id uint32, addr unsafe.Pointer) error {
	dev, err := unix.BytePtrFromString(x.device)
	if err != nil {
		return err
	}
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL, qcmd(cmd, prjQuota), uintptr(unsafe.Pointer(dev)), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return fmt.Errorf("quotactl on %s: %w", x.device, errno)
	}
	return nil
}

// Mechanism implements Controller.
func (x *XFS) Mechanism() string { return "xfs project quota" }

// SetProject puts dir in project id, inherited by everything created in it.
func SetProject(dir string, id uint32) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	var a fsxattr
	if err := ioctl(f, fsIocFsgetxattr, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("read project of %s: %w", dir, err)
	}
	a.Projid = id
	a.Xflags |= fsXflagProjinherit
	if err := ioctl(f, fsIocFssetxattr, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("set project %d on %s: %w", id, dir, err)
	}
	return nil
}

func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// Set implements Controller: it puts t.Path in project t.Project and sets
// the project's hard (and soft) block limit.
func (x *XFS) Set(ctx context.Context, t Target, limit int64) error {
	if t.Project == 0 {
		return fmt.Errorf("xfs quota on %s: no project id assigned: %w", t.Path, drivers.ErrInvalidArgument)
	}
	if err := SetProject(t.Path, t.Project); err != nil {
		return err
	}
	return x.setLimit(t.Project, limit)
}

func (x *XFS) setLimit(id uint32, limit int64) error {
	blocks := uint64((limit + basicBlock - 1) / basicBlock)
	q := diskQuota{Version: fsDquotVersion, Flags: fsProjQuota, Fieldmask: fsDqBsoft | fsDqBhard, ID: id, BlkSoftlimit: blocks, BlkHardlimit: blocks}
	if err := x.quotactl(qXSetQLim, id, unsafe.Pointer(&q)); err != nil {
		return fmt.Errorf("limit project %d to %d bytes: %w", id, limit, err)
	}
	return nil
}

// Get implements Controller.
func (x *XFS) Get(ctx context.Context, t Target) (Quota, error) {
	var q diskQuota
	if err := x.quotactl(qXGetQuota, t.Project, unsafe.Pointer(&q)); err != nil {
		return Quota{}, fmt.Errorf("read project %d: %w", t.Project, err)
	}
	return Quota{Limit: int64(q.BlkHardlimit) * basicBlock, Used: int64(q.Bcount) * basicBlock}, nil
}

// Clear implements Controller: a zero limit means none.
func (x *XFS) Clear(ctx context.Context, t Target) error { return x.setLimit(t.Project, 0) }

// HomeProject returns the first project id a driver home may hand out.
// Like dockerd, the home directory itself holds a project id and the
// snapshots get the ids above it; a home without one gets an id derived
// from its path, so two homes on one filesystem use different ranges.
func HomeProject(home string) (uint32, error) {
	f, err := os.Open(home)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var a fsxattr
	if err := ioctl(f, fsIocFsgetxattr, unsafe.Pointer(&a)); err != nil {
		return 0, fmt.Errorf("read project of %s: %w", home, err)
	}
	if a.Projid == 0 {
		h := fnv.New32a()
		h.Write([]byte(home))
		// 1<<16 ids per home, in [1<<24, 1<<31).
		a.Projid = 1<<24 + (h.Sum32()%(1<<15-1<<8))<<16
		if err := ioctl(f, fsIocFssetxattr, unsafe.Pointer(&a)); err != nil {
			return 0, fmt.Errorf("set project of %s: %w", home, err)
		}
	}
	return a.Projid + 1, nil
}
