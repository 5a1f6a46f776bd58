package devicemapper

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The device-mapper ioctl interface, from linux/dm-ioctl.h (version 4).

const controlPath = "/dev/mapper/control"

// dmIoctl is struct dm_ioctl: the header of every request and reply, the
// data (tables, messages, lists) following it at DataStart.
type dmIoctl struct {
	Version     [3]uint32
	DataSize    uint32 // the whole buffer, header included
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Padding     uint32
	Dev         uint64 // huge_encode_dev: unix.Major and unix.Minor read it
	Name        [dmNameLen]byte
	UUID        [dmUUIDLen]byte
	Data        [7]byte
}

// dmTargetSpec is struct dm_target_spec; its NUL-terminated parameters
// (or status) follow it.
type dmTargetSpec struct {
	SectorStart uint64
	Length      uint64
	Status      int32
	Next        uint32
	TargetType  [dmMaxTypeName]byte
}

const (
	dmNameLen     = 128
	dmUUIDLen     = 129
	dmMaxTypeName = 16
	dmHeaderSize  = 312 // sizeof(struct dm_ioctl)
	dmSpecSize    = 40  // sizeof(struct dm_target_spec)

	dmVersionMajor = 4

	// Commands (enum in dm-ioctl.h).
	dmVersionCmd      = 0
	dmListDevicesCmd  = 2
	dmDevCreateCmd    = 3
	dmDevRemoveCmd    = 4
	dmDevSuspendCmd   = 6
	dmDevStatusCmd    = 7
	dmTableLoadCmd    = 9
	dmTableStatusCmd  = 12
	dmListVersionsCmd = 13
	dmTargetMsgCmd    = 14

	// Flags.
	dmReadonlyFlag       = 1 << 0
	dmSuspendFlag        = 1 << 1
	dmStatusTableFlag    = 1 << 4
	dmActivePresentFlag  = 1 << 5
	dmBufferFullFlag     = 1 << 8
	dmDataOutFlag        = 1 << 16
	dmDeferredRemoveFlag = 1 << 17
)

// dmRequest is _IOWR(DM_IOCTL, cmd, struct dm_ioctl).
func dmRequest(cmd uint) uint {
	const iocReadWrite, dmIoctlType = 3, 0xfd
	return iocReadWrite<<30 | dmHeaderSize<<16 | dmIoctlType<<8 | cmd
}

// ioctlControl issues device-mapper ioctls on /dev/mapper/control.
type ioctlControl struct {
	f *os.File
}

func openIoctlControl() (*ioctlControl, error) {
	f, err := os.OpenFile(controlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", controlPath, err)
	}
	c := &ioctlControl{f: f}
	hdr, _, err := c.call("version", dmVersionCmd, "", 0, nil, 0)
	if err != nil {
		f.Close()
		return nil, err
	}
	if hdr.Version[0] != dmVersionMajor {
		f.Close()
		return nil, fmt.Errorf("device-mapper ioctl interface %d.%d.%d, this driver speaks %d.x", hdr.Version[0], hdr.Version[1], hdr.Version[2], dmVersionMajor)
	}
	return c, nil
}

func (c *ioctlControl) Kind() string { return controlIoctl }

func (c *ioctlControl) Close() error { return c.f.Close() }

// call issues cmd for device name with payload after the header and room
// for out bytes of reply data, growing the buffer while the kernel says it
// is full. It returns the reply header and data.
func (c *ioctlControl) call(op string, cmd uint, name string, flags uint32, payload []byte, out int) (*dmIoctl, []byte, error) {
	if len(name) >= dmNameLen {
		return nil, nil, &dmError{Op: op, Errno: unix.EINVAL, Err: fmt.Errorf("device name %q is longer than %d bytes: %w", name, dmNameLen-1, unix.EINVAL)}
	}
	room := max(len(payload), out)
	for {
		// []uint64 keeps the buffer 8-byte aligned, as the structs need.
		words := make([]uint64, (dmHeaderSize+room+7)/8)
		buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
		hdr := (*dmIoctl)(unsafe.Pointer(&words[0]))
		hdr.Version = [3]uint32{dmVersionMajor, 0, 0}
		hdr.DataSize = uint32(len(buf))
		hdr.DataStart = dmHeaderSize
		hdr.Flags = flags
		copy(hdr.Name[:], name)
		copy(buf[dmHeaderSize:], payload)
		if cmd == dmTableLoadCmd {
			hdr.TargetCount = 1 // specPayload lays out one target
		}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, c.f.Fd(), uintptr(dmRequest(cmd)), uintptr(unsafe.Pointer(&words[0])))
		runtime.KeepAlive(words)
		if errno != 0 {
			return nil, nil, &dmError{Op: op, Errno: errno, Err: errno}
		}
		if hdr.Flags&dmBufferFullFlag != 0 && room < 1<<24 {
			room = max(room*2, 16<<10)
			continue
		}
		end := min(int(hdr.DataSize), len(buf))
		start := min(int(hdr.DataStart), end)
		return hdr, buf[start:end], nil
	}
}

func (c *ioctlControl) Create(name string, t target, readOnly bool) (devInfo, error) {
	op := "create " + name
	if _, _, err := c.call(op, dmDevCreateCmd, name, 0, nil, 0); err != nil {
		return devInfo{}, err
	}
	var flags uint32
	if readOnly {
		flags = dmReadonlyFlag
	}
	_, _, err := c.call(op+": load table "+t.String(), dmTableLoadCmd, name, flags, specPayload(t), 0)
	if err == nil {
		_, _, err = c.call(op+": resume", dmDevSuspendCmd, name, 0, nil, 0)
	}
	if err != nil {
		c.call(op+": undo", dmDevRemoveCmd, name, 0, nil, 0)
		return devInfo{}, err
	}
	info, err := c.Info(name)
	if err != nil {
		return info, err
	}
	return info, ensureNode(name, info)
}

// specPayload lays out one dm_target_spec and its parameters, padded to 8
// bytes; Next is the distance to where a following spec would start.
func specPayload(t target) []byte {
	n := (dmSpecSize + len(t.Params) + 1 + 7) &^ 7
	b := make([]byte, n)
	binary.NativeEndian.PutUint64(b[0:], t.Start)
	binary.NativeEndian.PutUint64(b[8:], t.Length)
	binary.NativeEndian.PutUint32(b[20:], uint32(n))
	copy(b[24:24+dmMaxTypeName-1], t.Type)
	copy(b[dmSpecSize:], t.Params)
	return b
}

func (c *ioctlControl) Message(name, msg string) error {
	payload := make([]byte, (8+len(msg)+1+7)&^7) // struct dm_target_msg: sector 0, then the text
	copy(payload[8:], msg)
	_, _, err := c.call("message "+msg+" to "+name, dmTargetMsgCmd, name, 0, payload, 0)
	return err
}

func (c *ioctlControl) Suspend(name string) error {
	_, _, err := c.call("suspend "+name, dmDevSuspendCmd, name, dmSuspendFlag, nil, 0)
	return err
}

func (c *ioctlControl) Resume(name string) error {
	_, _, err := c.call("resume "+name, dmDevSuspendCmd, name, 0, nil, 0)
	return err
}

func (c *ioctlControl) Remove(name string, deferred bool) (bool, error) {
	var flags uint32
	if deferred {
		flags = dmDeferredRemoveFlag
	}
	hdr, _, err := c.call("remove "+name, dmDevRemoveCmd, name, flags, nil, 0)
	if err != nil {
		return false, err
	}
	// The kernel clears the flag when it removed the device at once.
	if deferred && hdr.Flags&dmDeferredRemoveFlag != 0 {
		return true, nil
	}
	removeNode(name)
	return false, nil
}

func (c *ioctlControl) Info(name string) (devInfo, error) {
	hdr, _, err := c.call("info "+name, dmDevStatusCmd, name, 0, nil, 0)
	if err != nil {
		return devInfo{}, err
	}
	return devInfo{
		Major:     unix.Major(hdr.Dev),
		Minor:     unix.Minor(hdr.Dev),
		OpenCount: hdr.OpenCount,
		Suspended: hdr.Flags&dmSuspendFlag != 0,
		ReadOnly:  hdr.Flags&dmReadonlyFlag != 0,
		LiveTable: hdr.Flags&dmActivePresentFlag != 0,
	}, nil
}

func (c *ioctlControl) Status(name string) (target, error) {
	return c.table("status "+name, name, 0)
}

func (c *ioctlControl) Table(name string) (target, error) {
	return c.table("table "+name, name, dmStatusTableFlag)
}

func (c *ioctlControl) table(op, name string, flags uint32) (target, error) {
	hdr, data, err := c.call(op, dmTableStatusCmd, name, flags, nil, 4<<10)
	if err != nil {
		return target{}, err
	}
	ts, err := parseSpecs(data, hdr.TargetCount)
	if err != nil {
		return target{}, &dmError{Op: op, Err: err}
	}
	if len(ts) != 1 {
		return target{}, &dmError{Op: op, Err: fmt.Errorf("%d targets, want 1 (is %s a device of this driver?)", len(ts), name)}
	}
	return ts[0], nil
}

// parseSpecs reads count dm_target_specs from a status reply; each Next
// is an offset from the start of the data.
func parseSpecs(data []byte, count uint32) ([]target, error) {
	var ts []target
	off := 0
	for i := uint32(0); i < count; i++ {
		if off+dmSpecSize > len(data) {
			return nil, fmt.Errorf("target %d at offset %d runs past the %d-byte reply", i, off, len(data))
		}
		s := data[off:]
		t := target{
			Start:  binary.NativeEndian.Uint64(s[0:]),
			Length: binary.NativeEndian.Uint64(s[8:]),
			Type:   cString(s[24 : 24+dmMaxTypeName]),
			Params: cString(s[dmSpecSize:]),
		}
		ts = append(ts, t)
		off = int(binary.NativeEndian.Uint32(s[20:]))
	}
	return ts, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

func (c *ioctlControl) List() ([]string, error) {
	_, data, err := c.call("list devices", dmListDevicesCmd, "", 0, nil, 8<<10)
	if err != nil {
		return nil, err
	}
	return parseNameList(data)
}

// parseNameList reads struct dm_name_list entries: dev (u64), next (u32,
// from this entry to the next, 0 for the last), name. A first dev of 0
// means no devices.
func parseNameList(data []byte) ([]string, error) {
	var names []string
	for off := 0; ; {
		if off+12 > len(data) {
			return nil, fmt.Errorf("device list entry at offset %d runs past the %d-byte reply", off, len(data))
		}
		e := data[off:]
		if binary.NativeEndian.Uint64(e) == 0 {
			return names, nil
		}
		names = append(names, cString(e[12:]))
		next := int(binary.NativeEndian.Uint32(e[8:]))
		if next == 0 {
			return names, nil
		}
		off += next
	}
}

func (c *ioctlControl) Targets() (map[string]string, error) {
	_, data, err := c.call("list targets", dmListVersionsCmd, "", 0, nil, 4<<10)
	if err != nil {
		return nil, err
	}
	return parseVersions(data)
}

// parseVersions reads struct dm_target_versions entries: next (u32, from
// this entry, 0 for the last), version[3], name.
func parseVersions(data []byte) (map[string]string, error) {
	targets := map[string]string{}
	for off := 0; ; {
		if off+16 > len(data) {
			return nil, fmt.Errorf("target list entry at offset %d runs past the %d-byte reply", off, len(data))
		}
		e := data[off:]
		v := func(i int) uint32 { return binary.NativeEndian.Uint32(e[4+4*i:]) }
		targets[cString(e[16:])] = fmt.Sprintf("%d.%d.%d", v(0), v(1), v(2))
		next := int(binary.NativeEndian.Uint32(e))
		if next == 0 {
			return targets, nil
		}
		off += next
	}
}
