package btrfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/layerlab/layerlab/drivers"
)

// A reader of the stream `btrfs send` writes (btrfs-progs send.h, protocol
// version 1): a 17-byte header ("btrfs-stream\0", a le32 version),
// then commands, each a le32 payload length, a le16 command, a le32
// CRC32C, and a payload of attributes (le16 type, le16 length, value).
// With --no-data the stream names every inode the kernel found changed
// between two subvolumes without carrying file data; changes.go turns the
// paths it names into a layer's changes.

const sendMagic = "btrfs-stream\x00"

// Commands that name paths (send.h, enum btrfs_send_cmd).
const (
	sendSubvol       = 1
	sendSnapshot     = 2
	sendMkfile       = 3
	sendMkdir        = 4
	sendMknod        = 5
	sendMkfifo       = 6
	sendMksock       = 7
	sendSymlink      = 8
	sendRename       = 9
	sendLink         = 10
	sendUnlink       = 11
	sendRmdir        = 12
	sendSetXattr     = 13
	sendRemoveXattr  = 14
	sendWrite        = 15
	sendClone        = 16
	sendTruncate     = 17
	sendChmod        = 18
	sendChown        = 19
	sendUtimes       = 20
	sendEnd          = 21
	sendUpdateExtent = 22
)

// Attributes this reader uses (send.h, enum btrfs_send_attr).
const (
	attrPath      = 15
	attrPathTo    = 16
	attrPathLink  = 17
	attrClonePath = 22
)

// sendCmd is one command: its number and its attributes by type (a type
// given twice keeps the last value).
type sendCmd struct {
	cmd   uint16
	attrs map[uint16][]byte
}

func (c sendCmd) path(attr uint16) string { return string(c.attrs[attr]) }

// crcTable is CRC32C; btrfs seeds it with 0 and does not invert it.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

// parseSend calls fn for every command of the stream in data, checking
// each command's CRC; it stops at the end command or the end of data.
// A malformed stream wraps drivers.ErrInvalidArgument.
func parseSend(data []byte, fn func(sendCmd) error) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("btrfs send stream: "+format+": %w", append(a, drivers.ErrInvalidArgument)...)
	}
	if len(data) < len(sendMagic)+4 || !bytes.HasPrefix(data, []byte(sendMagic)) {
		return bad("no stream header")
	}
	// Version 2 lets the last attribute of a data command run to the
	// end without a length; the driver asks for version 1.
	if v := binary.LittleEndian.Uint32(data[len(sendMagic):]); v != 1 {
		return bad("protocol version %d, this reader knows 1", v)
	}
	rest := data[len(sendMagic)+4:]
	for len(rest) > 0 {
		if len(rest) < 10 {
			return bad("a command header cut short (%d bytes)", len(rest))
		}
		n := binary.LittleEndian.Uint32(rest)
		cmd := binary.LittleEndian.Uint16(rest[4:])
		crc := binary.LittleEndian.Uint32(rest[6:])
		if uint64(n) > uint64(len(rest)-10) {
			return bad("command %d says %d bytes, %d left", cmd, n, len(rest)-10)
		}
		whole := make([]byte, 10+int(n))
		copy(whole, rest[:10+int(n)])
		clear(whole[6:10])
		if got := ^crc32.Update(^uint32(0), crcTable, whole); got != crc {
			return bad("command %d: CRC %#x, computed %#x", cmd, crc, got)
		}
		c := sendCmd{cmd: cmd, attrs: map[uint16][]byte{}}
		payload := rest[10 : 10+int(n)]
		for len(payload) > 0 {
			if len(payload) < 4 {
				return bad("command %d: an attribute header cut short", cmd)
			}
			typ := binary.LittleEndian.Uint16(payload)
			l := int(binary.LittleEndian.Uint16(payload[2:]))
			if l > len(payload)-4 {
				return bad("command %d: attribute %d says %d bytes, %d left", cmd, typ, l, len(payload)-4)
			}
			c.attrs[typ] = payload[4 : 4+l]
			payload = payload[4+l:]
		}
		rest = rest[10+int(n):]
		if cmd == sendEnd {
			return nil
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return nil
}
