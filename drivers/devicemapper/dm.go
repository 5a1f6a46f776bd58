package devicemapper

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// sectorSize is device-mapper's unit of length.
const sectorSize = 512

// mapperDir holds the device nodes of mapped devices.
const mapperDir = "/dev/mapper"

// target is one line of a device-mapper table: start and length in
// sectors, the target type and its parameters (or, read back with status,
// its status).
type target struct {
	Start, Length uint64
	Type          string
	Params        string
}

func (t target) String() string {
	return fmt.Sprintf("%d %d %s %s", t.Start, t.Length, t.Type, t.Params)
}

// devInfo is what device-mapper says about one mapped device.
type devInfo struct {
	Major, Minor uint32
	OpenCount    int32
	Suspended    bool
	ReadOnly     bool
	LiveTable    bool
}

// control is how the driver talks to device-mapper. Two implementations:
// ioctls on /dev/mapper/control (the default: no process per operation,
// which is most of the cost of a thin-device cycle) and dmsetup, the
// reference tool, kept because its behaviour and messages are what an
// administrator checks against and because it synchronises with udev on
// hosts that run it (its cookies), which the ioctl path does not do: there
// the driver makes the /dev/mapper node itself. Both return *dmError.
type control interface {
	// Kind is "ioctl" or "dmsetup".
	Kind() string
	// Create makes device name with the one-target table t and activates
	// it (load, resume); the /dev/mapper node exists when it returns.
	Create(name string, t target, readOnly bool) (devInfo, error)
	// Message sends msg to sector 0 of device name (a thin-pool).
	Message(name, msg string) error
	Suspend(name string) error
	Resume(name string) error
	// Remove removes device name. With deferred, a device that is still
	// open is removed by the kernel on its last close instead of failing
	// with EBUSY, and pending says so.
	Remove(name string, deferred bool) (pending bool, err error)
	Info(name string) (devInfo, error)
	// Status returns the live table's target with its status as Params.
	Status(name string) (target, error)
	// Table returns the live table's target.
	Table(name string) (target, error)
	// List returns the names of all mapped devices.
	List() ([]string, error)
	// Targets returns the loaded target types and their versions.
	Targets() (map[string]string, error)
	Close() error
}

// dmError is a failed device-mapper operation with the errno the kernel
// returned: EBUSY for an open device, ENXIO for a device that does not
// exist, EEXIST and ENODATA for thin ids that exist or do not. A missing
// device or thin id also matches drivers.ErrNotFound.
type dmError struct {
	Op    string     // what was asked, such as "message create_thin 5 to NAME"
	Errno unix.Errno // 0 when the failure carried none
	Err   error      // the errno itself, or dmsetup's *command.Error
}

func (e *dmError) Error() string { return "device-mapper " + e.Op + ": " + e.Err.Error() }

func (e *dmError) Unwrap() []error {
	if e.Errno != 0 && !errors.Is(e.Err, e.Errno) {
		return []error{e.Errno, e.Err}
	}
	return []error{e.Err}
}

// Is makes ENXIO (no such device) and ENODATA (no such thin id) match
// drivers.ErrNotFound.
func (e *dmError) Is(target error) bool {
	return target == drivers.ErrNotFound && (e.Errno == unix.ENXIO || e.Errno == unix.ENODATA)
}

// errnoByText maps strerror text, as dmsetup prints it, back to the errno.
func errnoByText(text string) unix.Errno {
	text = strings.TrimSpace(text)
	for e := unix.Errno(1); e <= unix.EHWPOISON; e++ {
		if strings.EqualFold(e.Error(), text) {
			return e
		}
	}
	return 0
}

// dmsetupErrno finds the errno in dmsetup's stderr, which says, e.g.:
//
//	device-mapper: message ioctl on pool  failed: File exists
//	Device does not exist.
//	Device /dev/mapper/x not found
func dmsetupErrno(stderr string) unix.Errno {
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		if line == "Device does not exist." || (strings.HasPrefix(line, "Device ") && strings.HasSuffix(line, " not found")) {
			return unix.ENXIO
		}
		if i := strings.LastIndex(line, "failed: "); i >= 0 {
			if e := errnoByText(line[i+len("failed: "):]); e != 0 {
				return e
			}
		}
	}
	return 0
}

// poolStatus is the status of a thin-pool target:
//
//	<transaction id> <used meta>/<total meta> <used data>/<total data> <held root> rw|ro|out_of_data_space ...
//
// Metadata blocks are 4 KiB, data blocks the pool's block size.
type poolStatus struct {
	Transaction         uint64
	UsedMeta, TotalMeta uint64
	UsedData, TotalData uint64
	Mode                string
	NeedsCheck          bool
}

func parsePoolStatus(s string) (poolStatus, error) {
	var p poolStatus
	f := strings.Fields(s)
	if len(f) == 1 && f[0] == "Fail" {
		return p, fmt.Errorf("thin-pool status %q: the pool has failed; check dmesg and run thin_check on its metadata", s)
	}
	if len(f) < 5 {
		return p, fmt.Errorf("thin-pool status %q: want at least 5 fields", s)
	}
	var err error
	if p.Transaction, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return p, fmt.Errorf("thin-pool status %q: transaction id: %w", s, err)
	}
	if p.UsedMeta, p.TotalMeta, err = fraction(f[1]); err != nil {
		return p, fmt.Errorf("thin-pool status %q: metadata blocks: %w", s, err)
	}
	if p.UsedData, p.TotalData, err = fraction(f[2]); err != nil {
		return p, fmt.Errorf("thin-pool status %q: data blocks: %w", s, err)
	}
	p.Mode = f[4]
	for _, x := range f[5:] {
		if x == "needs_check" {
			p.NeedsCheck = true
		}
	}
	return p, nil
}

func fraction(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%q is not used/total", s)
	}
	used, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, err
	}
	total, err := strconv.ParseUint(b, 10, 64)
	return used, total, err
}

// parseThinStatus reads a thin target's status, "<mapped sectors>
// <highest mapped sector>" ("-" when nothing is mapped), and returns the
// mapped sectors.
func parseThinStatus(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) == 1 && f[0] == "Fail" {
		return 0, fmt.Errorf("thin status %q: the device has failed (its pool may be out of space or failed)", s)
	}
	if len(f) != 2 {
		return 0, fmt.Errorf("thin status %q: want <mapped sectors> <highest mapped sector>", s)
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("thin status %q: %w", s, err)
	}
	return n, nil
}

// poolTable is the table of a thin-pool target:
//
//	<metadata dev> <data dev> <block size> <low water mark> <#features> <features>...
type poolTable struct {
	Meta, Data   string // major:minor
	BlockSectors uint64
	// SkipZeroing is the skip_block_zeroing feature: newly provisioned
	// blocks keep whatever the data device held there.
	SkipZeroing bool
}

func parsePoolTable(params string) (poolTable, error) {
	f := strings.Fields(params)
	if len(f) < 4 {
		return poolTable{}, fmt.Errorf("thin-pool table %q: want <metadata dev> <data dev> <block size> <low water mark>", params)
	}
	bs, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return poolTable{}, fmt.Errorf("thin-pool table %q: block size: %w", params, err)
	}
	pt := poolTable{Meta: f[0], Data: f[1], BlockSectors: bs}
	for _, feature := range f[4:] {
		pt.SkipZeroing = pt.SkipZeroing || feature == "skip_block_zeroing"
	}
	return pt, nil
}

// poolTarget is the table of a pool over the metadata and data devices
// (paths or major:minor). Block zeroing stays on (the kernel's default;
// dockerd and containerd turn it off): a newly provisioned block reads as
// zeroes where it was not written, so no device sees another's old data,
// and lazily initialised ext4 inode tables and journals are safe. A full
// pool fails writes at once (error_if_no_space) instead of queueing them
// for a minute: nothing here would grow the pool meanwhile.
func poolTarget(dataBytes int64, meta, data string, blockBytes int64) target {
	blocks := uint64(dataBytes / blockBytes)
	lowWater := max(blocks/10, 1) // only raises an event; nothing here waits for it
	return target{
		Length: uint64(dataBytes / sectorSize),
		Type:   "thin-pool",
		Params: fmt.Sprintf("%s %s %d %d 1 error_if_no_space", meta, data, blockBytes/sectorSize, lowWater),
	}
}

// thinTarget is the table of thin device id of pool (major:minor).
func thinTarget(sizeBytes int64, pool string, id uint32) target {
	return target{Length: uint64(sizeBytes / sectorSize), Type: "thin", Params: fmt.Sprintf("%s %d", pool, id)}
}

// devPath is the node of mapped device name.
func devPath(name string) string { return filepath.Join(mapperDir, name) }

// ensureNode makes /dev/mapper/name when no udev made it: the test guest
// has devtmpfs (which makes /dev/dm-N) but no udev, and the ioctl path
// does not do libdevmapper's node management. A stale node from a device
// that was removed while open (deferred) is replaced.
func ensureNode(name string, info devInfo) error {
	path := devPath(name)
	want := unix.Mkdev(info.Major, info.Minor)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == want {
			return nil
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(want)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make device node %s: %w", path, err)
	}
	return nil
}

// removeNode deletes the node ensureNode made, leaving udev's symlinks to
// udev.
func removeNode(name string) {
	path := devPath(name)
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeDevice != 0 {
		os.Remove(path)
	}
}
