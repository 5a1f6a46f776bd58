package logs

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"
)

// ReadOptions choose the entries Read emits.
type ReadOptions struct {
	Tail  int       // only the last Tail entries that match; < 0 for all
	Since time.Time // entries at or after it; zero for no bound
	Until time.Time // entries at or before it; zero for no bound
}

func (o ReadOptions) match(e Entry) bool {
	return (o.Since.IsZero() || !e.Time.Before(o.Since)) && (o.Until.IsZero() || !e.Time.After(o.Until))
}

// decoder reads a log file's entries; an entry still being written is
// kept for the next call.
type decoder interface {
	// each calls fn for every whole entry up to the end of the input.
	each(fn func(Entry) error) error
	// buffered is how many bytes it read ahead of its position.
	buffered() int
}

// Source is a log kept on disk in one format, to read back.
type Source struct {
	Path   string
	decode func(*bufio.Reader) decoder
}

// JSONSource is a json-file log at path.
func JSONSource(path string) Source {
	return Source{Path: path, decode: func(br *bufio.Reader) decoder { return &lineReader{br: br} }}
}

// LocalSource is a log in the local driver's format at path.
func LocalSource(path string) Source {
	return Source{Path: path, decode: func(br *bufio.Reader) decoder { return &recordReader{br: br} }}
}

// Read emits the entries of the log that match o, oldest first, across
// its rotated (possibly gzip-compressed) files. It returns a Follower that
// goes on from the end of the live file (close it), or nil when there is
// no log yet. JSON lines that are not entries (a torn last line after a
// crash) are skipped.
func (s Source) Read(o ReadOptions, emit func(Entry) error) (*Follower, error) {
	path := s.Path
	files := Files(path)
	var ring []Entry // the last o.Tail matches when Tail >= 0
	keep := func(e Entry) error {
		if !o.match(e) {
			return nil
		}
		if o.Tail < 0 {
			return emit(e)
		}
		if o.Tail == 0 {
			return nil
		}
		if len(ring) == o.Tail {
			ring = ring[1:]
		}
		ring = append(ring, e)
		return nil
	}
	for _, p := range files[:len(files)-1] {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // rotated away meanwhile
		}
		if err != nil {
			return nil, err
		}
		err = s.readFile(f, keep)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
	}
	fl, err := s.openFollower()
	if fl == nil || err != nil {
		return nil, flushRing(ring, emit, err)
	}
	if err := fl.r.each(keep); err != nil {
		fl.Close()
		return nil, err
	}
	if err := flushRing(ring, emit, nil); err != nil {
		fl.Close()
		return nil, err
	}
	fl.o = o
	return fl, nil
}

func (s Source) readFile(f *os.File, fn func(Entry) error) error {
	var r io.Reader = f
	if strings.HasSuffix(f.Name(), ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return err
		}
		defer zr.Close()
		r = zr
	}
	return s.decode(bufio.NewReader(r)).each(fn)
}

func flushRing(ring []Entry, emit func(Entry) error, err error) error {
	if err != nil {
		return err
	}
	for _, e := range ring {
		if err := emit(e); err != nil {
			return err
		}
	}
	return nil
}

// Follower reads what is added to a live log, following it across a
// rotation (the live file renamed away) and a truncation (max-file 1).
type Follower struct {
	src Source
	f   *os.File
	ino uint64
	r   decoder
	o   ReadOptions
}

func (s Source) openFollower() (*Follower, error) {
	f, err := os.Open(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &Follower{src: s, f: f, ino: inode(f), r: s.decode(bufio.NewReader(f))}, nil
}

func inode(f *os.File) uint64 {
	fi, err := f.Stat()
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// Poll emits the entries added since the last read that match the
// options Read was given (tail no longer applies).
func (fl *Follower) Poll(emit func(Entry) error) error {
	match := func(e Entry) error {
		if fl.o.match(e) {
			return emit(e)
		}
		return nil
	}
	for {
		if err := fl.r.each(match); err != nil {
			return err
		}
		// Truncated under us (rotation with max-file 1): start over.
		if pos, err := fl.f.Seek(0, io.SeekCurrent); err == nil {
			if fi, err := fl.f.Stat(); err == nil && fi.Size() < pos-int64(fl.r.buffered()) {
				if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
					return err
				}
				fl.r = fl.src.decode(bufio.NewReader(fl.f))
				continue
			}
		}
		// Renamed away (rotated): what it had is read; go on in the new
		// live file.
		next, err := os.Open(fl.src.Path)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if ino := inode(next); ino == fl.ino {
			next.Close()
			return nil
		}
		fl.f.Close()
		fl.f, fl.ino, fl.r = next, inode(next), fl.src.decode(bufio.NewReader(next))
	}
}

// Close releases the live file.
func (fl *Follower) Close() error {
	if fl == nil || fl.f == nil {
		return nil
	}
	return fl.f.Close()
}

// lineReader reads whole log lines; a line still being written is kept
// for the next read.
type lineReader struct {
	br      *bufio.Reader
	pending []byte
}

func (lr *lineReader) buffered() int { return lr.br.Buffered() }

// each calls fn for every whole entry up to the end of the file.
func (lr *lineReader) each(fn func(Entry) error) error {
	for {
		line, err := lr.br.ReadBytes('\n')
		lr.pending = append(lr.pending, line...)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var e Entry
		ok := json.Unmarshal(lr.pending, &e) == nil
		lr.pending = lr.pending[:0]
		if !ok {
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
