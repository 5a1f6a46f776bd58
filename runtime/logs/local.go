package logs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// The local driver's format is this package's own, not dockerd's:
// dockerd's local driver writes length-prefixed protobuf records; a
// record here is
//
//	uint32 big-endian N | flags (1 byte) | Unix nanoseconds (int64 big-endian) | line (N-9 bytes)
//
// with flags bit 0 for stderr and bit 1 for a partial line. It is as
// compact (9 bytes of framing and metadata per line, against ~60 for a
// json-file line) and needs no protobuf dependency for three fields.
// Files rotate like json-file's and are gzip-compressed on rotation by
// default (max-size 20m, max-file 5, compress true: dockerd's defaults).
const (
	recordHead    = 9
	flagStderr    = 1 << 0
	flagPartial   = 1 << 1
	maxRecordBody = recordHead + 1<<20 // a line is cut at maxLine; anything larger is corruption
)

// localDefaults are dockerd's local driver defaults.
func localDefaults() FileOptions { return FileOptions{MaxSize: 20 << 20, MaxFile: 5, Compress: true} }

// Local is the local driver: compact records in a rotating, compressed
// file set that `docker logs` reads back.
type Local struct {
	mu  sync.Mutex
	out *rotatingFile
	buf []byte
}

// OpenLocal opens (appending) the local-format log at path. A record torn
// by a crash at the end of the live file is cut off first, so what is
// appended after it stays readable.
func OpenLocal(path string, o FileOptions) (*Local, error) {
	if err := repairLocal(path); err != nil {
		return nil, fmt.Errorf("container log %s: %w", path, err)
	}
	out, err := openRotating(path, o)
	if err != nil {
		return nil, err
	}
	return &Local{out: out}, nil
}

// appendRecord appends m's record to buf.
func appendRecord(buf []byte, m *Message) []byte {
	var flags byte
	if m.Stream == "stderr" {
		flags |= flagStderr
	}
	if m.Partial {
		flags |= flagPartial
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(recordHead+len(m.Line)))
	buf = append(buf, flags)
	buf = binary.BigEndian.AppendUint64(buf, uint64(m.Time.UnixNano()))
	return append(buf, m.Line...)
}

// Log appends m's record.
func (l *Local) Log(m *Message) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = appendRecord(l.buf[:0], m)
	return l.out.write(l.buf)
}

// Close closes the live file.
func (l *Local) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.close()
}

// errCorrupt is a record whose length cannot be right.
var errCorrupt = errors.New("local log: corrupt record length")

// decodeRecord turns one record body (flags, time, line) into an entry.
func decodeRecord(body []byte) Entry {
	e := Entry{Stream: "stdout", Time: time.Unix(0, int64(binary.BigEndian.Uint64(body[1:9]))).UTC(), Log: string(body[recordHead:])}
	if body[0]&flagStderr != 0 {
		e.Stream = "stderr"
	}
	if body[0]&flagPartial == 0 {
		e.Log += "\n"
	}
	return e
}

// recordReader reads local-format records; a record still being written
// is kept for the next read.
type recordReader struct {
	br      *bufio.Reader
	pending []byte
}

func (rr *recordReader) buffered() int { return rr.br.Buffered() }

// fill reads until pending holds n bytes; false when the input ends first.
func (rr *recordReader) fill(n int) (bool, error) {
	if have := len(rr.pending); have < n {
		rr.pending = append(rr.pending, make([]byte, n-have)...)
		got, err := io.ReadFull(rr.br, rr.pending[have:n])
		rr.pending = rr.pending[:have+got]
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// each calls fn for every whole record up to the end of the input.
func (rr *recordReader) each(fn func(Entry) error) error {
	for {
		if ok, err := rr.fill(4); !ok || err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(rr.pending)
		if n < recordHead || n > maxRecordBody {
			return fmt.Errorf("%w (%d bytes)", errCorrupt, n)
		}
		if ok, err := rr.fill(4 + int(n)); !ok || err != nil {
			return err
		}
		e := decodeRecord(rr.pending[4:])
		rr.pending = rr.pending[:0]
		if err := fn(e); err != nil {
			return err
		}
	}
}

// repairLocal truncates the live file after its last whole record.
func repairLocal(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var good int64
	var head [4]byte
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			break
		}
		n := binary.BigEndian.Uint32(head[:])
		if n < recordHead || n > maxRecordBody {
			break
		}
		if _, err := br.Discard(int(n)); err != nil {
			break
		}
		good += 4 + int64(n)
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == good {
		return nil
	}
	return f.Truncate(good)
}
