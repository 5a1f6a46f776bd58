package btrfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// stream builds a send stream of version 1 from commands, each a command
// number and its attributes in order (type, value).
func stream(cmds ...[]any) []byte {
	out := append([]byte(sendMagic), 1, 0, 0, 0)
	for _, c := range cmds {
		var payload []byte
		for i := 1; i+1 < len(c); i += 2 {
			v := []byte(c[i+1].(string))
			payload = binary.LittleEndian.AppendUint16(payload, uint16(c[i].(int)))
			payload = binary.LittleEndian.AppendUint16(payload, uint16(len(v)))
			payload = append(payload, v...)
		}
		hdr := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
		hdr = binary.LittleEndian.AppendUint16(hdr, uint16(c[0].(int)))
		hdr = append(hdr, 0, 0, 0, 0)
		crc := ^crc32.Update(^uint32(0), crcTable, append(append([]byte{}, hdr...), payload...))
		binary.LittleEndian.PutUint32(hdr[6:], crc)
		out = append(append(out, hdr...), payload...)
	}
	return out
}

func TestReadSuspects(t *testing.T) {
	s, err := readSuspects(stream(
		[]any{sendSnapshot, attrPath, "child"},
		[]any{sendMkfile, attrPath, "o257-7-0"},
		[]any{sendRename, attrPath, "o257-7-0", attrPathTo, "etc/new"},
		[]any{sendUpdateExtent, attrPath, "etc/passwd"},
		[]any{sendUnlink, attrPath, "etc/hosts"},
		[]any{sendLink, attrPath, "etc/new2", attrPathLink, "etc/new"},
		[]any{sendUtimes, attrPath, "etc"},
		[]any{sendEnd},
		[]any{sendUnlink, attrPath, "after-the-end"},
	))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(keys(s.paths), keys(s.deep), keys(s.data))
	want := "[etc etc/hosts etc/new etc/new2 etc/passwd o257-7-0] [etc/new o257-7-0] [etc/passwd]"
	if got != want {
		t.Errorf("suspects %s, want %s", got, want)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sortPaths(out)
}

func sortPaths(ps []string) []string {
	slices.SortFunc(ps, comparePaths)
	return ps
}

func TestComparePathsWalkOrder(t *testing.T) {
	got := sortPaths([]string{"a-c", "a/b", "a", "b", "a/b/c", "a.d"})
	if want := "[a a/b a/b/c a-c a.d b]"; fmt.Sprint(got) != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestParseSendRefusesMalformed(t *testing.T) {
	good := stream([]any{sendMkfile, attrPath, "f"})
	flipped := append([]byte{}, good...)
	flipped[len(flipped)-1] ^= 1
	for name, data := range map[string][]byte{
		"empty":       nil,
		"no magic":    []byte("not-a-stream-at-all"),
		"version 2":   append([]byte(sendMagic), 2, 0, 0, 0),
		"cut header":  good[:len(sendMagic)+4+5],
		"cut payload": good[:len(good)-1],
		"bad crc":     flipped,
	} {
		err := parseSend(data, func(sendCmd) error { return nil })
		if !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

// FuzzParseSend: no stream makes the reader panic or read out of bounds.
func FuzzParseSend(f *testing.F) {
	f.Add(stream([]any{sendMkfile, attrPath, "f"}, []any{sendRename, attrPath, "f", attrPathTo, "g"}))
	f.Add(stream([]any{sendEnd}))
	f.Add([]byte(sendMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = readSuspects(data)
	})
}
