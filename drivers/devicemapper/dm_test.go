package devicemapper

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
)

// The layout of struct dm_ioctl and struct dm_target_spec in
// linux/dm-ioctl.h, which the kernel checks only by size (in the ioctl
// number) and so would not catch a field out of place.
func TestIoctlLayout(t *testing.T) {
	var h dmIoctl
	for _, c := range []struct {
		field     string
		got, want uintptr
	}{
		{"sizeof(struct dm_ioctl)", unsafe.Sizeof(h), dmHeaderSize},
		{"data_size", unsafe.Offsetof(h.DataSize), 12},
		{"data_start", unsafe.Offsetof(h.DataStart), 16},
		{"target_count", unsafe.Offsetof(h.TargetCount), 20},
		{"open_count", unsafe.Offsetof(h.OpenCount), 24},
		{"flags", unsafe.Offsetof(h.Flags), 28},
		{"event_nr", unsafe.Offsetof(h.EventNr), 32},
		{"dev", unsafe.Offsetof(h.Dev), 40},
		{"name", unsafe.Offsetof(h.Name), 48},
		{"uuid", unsafe.Offsetof(h.UUID), 176},
		{"data", unsafe.Offsetof(h.Data), 305},
		{"sizeof(struct dm_target_spec)", unsafe.Sizeof(dmTargetSpec{}), dmSpecSize},
		{"dm_target_spec.next", unsafe.Offsetof(dmTargetSpec{}.Next), 20},
		{"dm_target_spec.target_type", unsafe.Offsetof(dmTargetSpec{}.TargetType), 24},
	} {
		if c.got != c.want {
			t.Errorf("%s at %d, want %d", c.field, c.got, c.want)
		}
	}
	// The request numbers as strace prints them.
	for cmd, want := range map[uint]uint{
		dmVersionCmd:     0xc138fd00,
		dmDevCreateCmd:   0xc138fd03,
		dmDevRemoveCmd:   0xc138fd04,
		dmDevSuspendCmd:  0xc138fd06,
		dmTableLoadCmd:   0xc138fd09,
		dmTableStatusCmd: 0xc138fd0c,
		dmTargetMsgCmd:   0xc138fd0e,
	} {
		if got := dmRequest(cmd); got != want {
			t.Errorf("request of command %d: %#x, want %#x", cmd, got, want)
		}
	}
}

func TestSpecPayloadRoundTrip(t *testing.T) {
	want := thinTarget(10<<30, "254:0", 42)
	b := specPayload(want)
	if len(b)%8 != 0 || binary.NativeEndian.Uint32(b[20:]) != uint32(len(b)) {
		t.Fatalf("spec of %d bytes with next %d: want 8-byte aligned, next = its length", len(b), binary.NativeEndian.Uint32(b[20:]))
	}
	// Two specs in a row, as a status reply lays them out (next counted
	// from the start of the data).
	two := append(append([]byte(nil), b...), b...)
	binary.NativeEndian.PutUint32(two[len(b)+20:], 0)
	got, err := parseSpecs(two, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("parsed %+v, want twice %+v", got, want)
	}
	if _, err := parseSpecs(b[:30], 1); err == nil {
		t.Error("a truncated reply parsed")
	}
}

func TestParseLists(t *testing.T) {
	// struct dm_name_list entries: dev, next, name.
	entry := func(dev uint64, name string, last bool) []byte {
		n := (12 + len(name) + 1 + 7) &^ 7
		e := make([]byte, n)
		binary.NativeEndian.PutUint64(e, dev)
		if !last {
			binary.NativeEndian.PutUint32(e[8:], uint32(n))
		}
		copy(e[12:], name)
		return e
	}
	data := append(entry(unix.Mkdev(254, 0), "pool", false), entry(unix.Mkdev(254, 1), "pool-snap-1", true)...)
	names, err := parseNameList(data)
	if err != nil || strings.Join(names, ",") != "pool,pool-snap-1" {
		t.Errorf("device list: %v, %v", names, err)
	}
	if names, err := parseNameList(make([]byte, 16)); err != nil || len(names) != 0 {
		t.Errorf("empty device list: %v, %v", names, err)
	}
	// struct dm_target_versions: next, version[3], name.
	v := make([]byte, 64)
	binary.NativeEndian.PutUint32(v, 32)
	for i, x := range []uint32{1, 22, 0} {
		binary.NativeEndian.PutUint32(v[4+4*i:], x)
	}
	copy(v[16:], "thin-pool")
	binary.NativeEndian.PutUint32(v[32+4:], 4)
	copy(v[32+16:], "thin")
	targets, err := parseVersions(v)
	if err != nil || targets["thin-pool"] != "1.22.0" || targets["thin"] != "4.0.0" {
		t.Errorf("targets: %v, %v", targets, err)
	}
}

// Status and table lines as the test guest's 6.1 kernel prints them.
func TestParseStatus(t *testing.T) {
	p, err := parsePoolStatus("0 4131/262144 3664/163840 - rw discard_passdown queue_if_no_space - 1024")
	if err != nil || p.UsedMeta != 4131 || p.TotalMeta != 262144 || p.UsedData != 3664 || p.TotalData != 163840 || p.Mode != "rw" || p.NeedsCheck {
		t.Errorf("pool status: %+v, %v", p, err)
	}
	if p, err := parsePoolStatus("7 10/32768 5/163840 - ro discard_passdown queue_if_no_space needs_check 1024"); err != nil || !p.NeedsCheck || p.Mode != "ro" || p.Transaction != 7 {
		t.Errorf("pool status needing a check: %+v, %v", p, err)
	}
	for _, bad := range []string{"Fail", "0 4131 3664/163840 - rw", "x"} {
		if _, err := parsePoolStatus(bad); err == nil {
			t.Errorf("pool status %q parsed", bad)
		}
	}
	for in, want := range map[string]uint64{"468992 20971519": 468992, "0 -": 0} {
		if got, err := parseThinStatus(in); err != nil || got != want {
			t.Errorf("thin status %q: %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := parseThinStatus("Fail"); err == nil {
		t.Error("a failed thin device's status parsed")
	}
	pt, err := parsePoolTable("7:1 7:0 128 16384 1 error_if_no_space")
	if err != nil || pt.Meta != "7:1" || pt.Data != "7:0" || pt.BlockSectors != 128 || pt.SkipZeroing {
		t.Errorf("pool table: %+v, %v", pt, err)
	}
	if pt, err := parsePoolTable("254:1 254:2 1024 1024 1 skip_block_zeroing"); err != nil || !pt.SkipZeroing || pt.BlockSectors != 1024 {
		t.Errorf("lvm's pool table: %+v, %v", pt, err)
	}
	tl, err := parseTableLine("0 20971520 thin 254:0 7\n")
	if err != nil || tl != thinTarget(10<<30, "254:0", 7) {
		t.Errorf("table line: %+v, %v", tl, err)
	}
	if got := poolTarget(10<<30, "7:1", "7:0", 64<<10).String(); got != "0 20971520 thin-pool 7:1 7:0 128 16384 1 error_if_no_space" {
		t.Errorf("pool table %q", got)
	}
}

func TestParseDmsetup(t *testing.T) {
	info, err := parseDmsetupInfo("254 3 1 L-sr")
	if err != nil || info.Major != 254 || info.Minor != 3 || info.OpenCount != 1 || !info.LiveTable || !info.Suspended || !info.ReadOnly {
		t.Errorf("info: %+v, %v", info, err)
	}
	if names := parseDmsetupList("pool\t(254:0)\npool-snap-1\t(254:1)"); strings.Join(names, ",") != "pool,pool-snap-1" {
		t.Errorf("ls: %v", names)
	}
	if names := parseDmsetupList("No devices found"); len(names) != 0 {
		t.Errorf("ls of nothing: %v", names)
	}
	if tg := parseDmsetupTargets("thin-pool        v1.22.0\nthin             v1.22.0\n"); tg["thin-pool"] != "1.22.0" {
		t.Errorf("targets: %v", tg)
	}
}

// dmsetup's messages, as the test guest's dmsetup 1.02.185 prints them,
// become errnos that errors.Is finds, and the missing ones ErrNotFound.
func TestErrorMapping(t *testing.T) {
	for stderr, want := range map[string]unix.Errno{
		"device-mapper: message ioctl on pool  failed: File exists\nCommand failed.\n":              unix.EEXIST,
		"device-mapper: message ioctl on pool  failed: No data available\nCommand failed.\n":        unix.ENODATA,
		"device-mapper: remove ioctl on t3  failed: Device or resource busy\nCommand failed.\n":     unix.EBUSY,
		"device-mapper: remove ioctl on nosuch  failed: No such device or address\nCommand failed.": unix.ENXIO,
		"Device does not exist.\nCommand failed.\n":                                                 unix.ENXIO,
		"Device /dev/mapper/x not found\nCommand failed.\n":                                         unix.ENXIO,
		"something else\n": 0,
	} {
		if got := dmsetupErrno(stderr); got != want {
			t.Errorf("%q: errno %v, want %v", stderr, got, want)
		}
	}
	cmdErr := &command.Error{Cmd: "dmsetup remove x", Code: 1, Stderr: "device-mapper: remove ioctl on x  failed: Device or resource busy\n", Err: errors.New("exit status 1")}
	busy := error(&dmError{Op: "remove x", Errno: unix.EBUSY, Err: cmdErr})
	var ce *command.Error
	if !errors.Is(busy, unix.EBUSY) || errors.Is(busy, drivers.ErrNotFound) || !errors.As(busy, &ce) {
		t.Errorf("busy: %v", busy)
	}
	if !strings.Contains(busy.Error(), "Device or resource busy") {
		t.Errorf("busy says %q, not dmsetup's message", busy)
	}
	for _, e := range []unix.Errno{unix.ENXIO, unix.ENODATA} {
		err := error(&dmError{Op: "x", Errno: e, Err: e})
		if !errors.Is(err, drivers.ErrNotFound) || !errors.Is(err, e) {
			t.Errorf("%v: not ErrNotFound", err)
		}
	}
}

func TestOptions(t *testing.T) {
	c, err := parseOptions(nil)
	if err != nil || c.dataSize != defaultDataSize || c.metaSize != defaultMetadataSize || c.blockSize != defaultBlockSize || c.fs != "ext4" || c.control != controlIoctl || c.baseSize != defaultBaseSize || c.thinPool != "" {
		t.Errorf("defaults: %+v, %v", c, err)
	}
	c, err = parseOptions(drivers.Options{OptThinPool: "/dev/mapper/vg-thin", OptFS: "xfs", OptControl: "dmsetup", OptSize: "20G"})
	if err != nil || c.thinPool != "vg-thin" || c.fs != "xfs" || c.control != controlDmsetup || c.baseSize != 20<<30 {
		t.Errorf("user pool: %+v, %v", c, err)
	}
	for _, bad := range []drivers.Options{
		{"nosuch": "1"},
		{OptFS: "btrfs"},
		{OptControl: "lvm"},
		{OptBlockSize: "96K"},
		{OptBlockSize: "32K"},
		{OptMetadataSize: "1M"},
		{OptDataSize: "512K"},
		{OptSize: "100K"},
		{OptSize: "ten"},
		{OptThinPool: "/dev/vg/thin"},
		{OptThinPool: "vg-thin", OptDataSize: "20G"},
	} {
		if _, err := parseOptions(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%v: got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestSuperblockInodes(t *testing.T) {
	ext4 := make([]byte, 4096)
	binary.LittleEndian.PutUint32(ext4[1024:], 655360)
	binary.LittleEndian.PutUint32(ext4[1024+16:], 655339)
	binary.LittleEndian.PutUint16(ext4[1024+56:], 0xEF53)
	if n, err := superblockInodes(ext4); err != nil || n != 21 {
		t.Errorf("ext4: %d, %v", n, err)
	}
	xfs := make([]byte, 4096)
	copy(xfs, "XFSB")
	binary.BigEndian.PutUint64(xfs[128:], 64)
	binary.BigEndian.PutUint64(xfs[136:], 60)
	if n, err := superblockInodes(xfs); err != nil || n != 4 {
		t.Errorf("xfs: %d, %v", n, err)
	}
	if _, err := superblockInodes(make([]byte, 4096)); err == nil {
		t.Error("zeroes read as a superblock")
	}
	if needsRecovery(ext4) || needsRecovery(xfs) {
		t.Error("clean superblocks need recovery")
	}
	binary.LittleEndian.PutUint32(ext4[1024+96:], 0x2c6) // filetype, extents, flex_bg, 64bit, recover
	if !needsRecovery(ext4) {
		t.Error("an ext4 with the recover flag needs no recovery")
	}
}

func TestThinID(t *testing.T) {
	if id, err := thinID("42"); err != nil || id != 42 {
		t.Errorf("42: %d, %v", id, err)
	}
	if _, err := thinID("16777216"); !errors.Is(err, drivers.ErrUnavailable) {
		t.Errorf("2^24: %v, want ErrUnavailable", err)
	}
	for _, bad := range []string{"0", "x", "-1"} {
		if _, err := thinID(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%q: %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestMkfsArgs(t *testing.T) {
	if got := strings.Join(mkfsArgs("ext4", "/dev/x", true), " "); got != "mkfs.ext4 -q -E nodiscard,lazy_itable_init=1,lazy_journal_init=1 /dev/x" {
		t.Errorf("ext4 on a zeroing pool: %s", got)
	}
	if got := strings.Join(mkfsArgs("ext4", "/dev/x", false), " "); !strings.Contains(got, "lazy_journal_init=0") {
		t.Errorf("ext4 on a pool that does not zero: %s, want the journal zeroed", got)
	}
	if got := strings.Join(mkfsArgs("xfs", "/dev/x", true), " "); got != "mkfs.xfs -q -f -K /dev/x" {
		t.Errorf("xfs: %s", got)
	}
}

func TestMountOptions(t *testing.T) {
	if got := strings.Join(mountOptions("xfs", true), ","); got != "ro,nouuid" {
		t.Errorf("xfs view: %q", got)
	}
	if got := strings.Join(mountOptions("ext4", false), ","); got != "noinit_itable" {
		t.Errorf("ext4 active: %q", got)
	}
}

// On a kernel without device-mapper, such as the development VM's, the
// probe says so in the one sentence `layerlab driver ls` shows.
func TestProbeWithoutDeviceMapper(t *testing.T) {
	if hasMisc("device-mapper") {
		t.Skip("this kernel has device-mapper")
	}
	p := Probe(t.TempDir())
	if p.Reason != noThinPool {
		t.Errorf("reason %q, want %q", p.Reason, noThinPool)
	}
	if _, err := New(t.Context(), t.TempDir(), nil); !errors.Is(err, drivers.ErrUnavailable) {
		t.Errorf("New without device-mapper: %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(controlPath); err == nil {
		t.Logf("%s exists, but /proc/misc lists no device-mapper behind it", controlPath)
	}
}
