package logs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/docker/go-units"
)

// FileOptions are the rotation options json-file and local share, and
// the dual-logging cache with them.
type FileOptions struct {
	MaxSize  int64 // bytes a file may reach before it rotates; 0 never rotates
	MaxFile  int   // files kept, the live one included (>= 1)
	Compress bool  // gzip the rotated files (path.N.gz)
}

// parseFileOptions reads max-size, max-file and compress under the given
// keys (prefix "cache-" for the cache) over the defaults in o.
func parseFileOptions(driver, prefix string, opts map[string]string, o FileOptions) (FileOptions, error) {
	if v, ok := opts[prefix+"max-size"]; ok {
		n, err := units.RAMInBytes(v)
		if v == "-1" { // dockerd's "no limit"
			n, err = 0, nil
		}
		if err != nil || n < 0 {
			return o, fmt.Errorf("%smax-size=%q for the %s log driver: want a size such as 10m or 1g (-1 or 0: never rotate): %w", prefix, v, driver, ErrOption)
		}
		if n < 1 {
			n = 0
		}
		o.MaxSize = n
	}
	if v, ok := opts[prefix+"max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return o, fmt.Errorf("%smax-file=%q for the %s log driver: want a count of at least 1: %w", prefix, v, driver, ErrOption)
		}
		if o.MaxSize == 0 && n > 1 {
			return o, fmt.Errorf("%smax-file=%d needs %smax-size, or the log never rotates: %w", prefix, n, prefix, ErrOption)
		}
		o.MaxFile = n
	}
	if v, ok := opts[prefix+"compress"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("%scompress=%q for the %s log driver: want true or false: %w", prefix, v, driver, ErrOption)
		}
		o.Compress = b
	}
	if o.MaxFile < 1 {
		o.MaxFile = 1
	}
	return o, nil
}

// rotatingFile appends records to a log file, rotating it by size into
// path.1 ... path.N (path.N.gz when compressed), as dockerd's loggerutils.
type rotatingFile struct {
	path   string
	o      FileOptions
	f      *os.File
	size   int64
	closed bool
}

func openRotating(path string, o FileOptions) (*rotatingFile, error) {
	r := &rotatingFile{path: path, o: o}
	if o.MaxFile < 1 {
		r.o.MaxFile = 1
	}
	if err := r.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotatingFile) open(mode int) error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|mode, 0o640)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("container log: %w", err)
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// write appends rec whole, rotating first when the live file would pass
// MaxSize (a record larger than MaxSize still goes into a file of its own).
// A rotation that fails (a full disk while compressing, say) is reported
// and the live file reopened for appending, so the container's output
// goes on being logged; the next write tries the rotation again.
func (r *rotatingFile) write(rec []byte) error {
	if r.closed {
		return fmt.Errorf("container log %s: closed", r.path)
	}
	var rotErr error
	if r.f != nil && r.o.MaxSize > 0 && r.size > 0 && r.size+int64(len(rec)) > r.o.MaxSize {
		if err := r.rotate(); err != nil {
			rotErr = fmt.Errorf("rotating container log %s: %w", r.path, err)
		}
	}
	if r.f == nil {
		if err := r.open(os.O_APPEND); err != nil {
			return errors.Join(rotErr, err)
		}
	}
	n, err := r.f.Write(rec)
	r.size += int64(n)
	return errors.Join(rotErr, err)
}

// rotate shifts path.N-1 to path.N ... path to path.1 (compressing it to
// path.1.gz when asked), dropping what falls past MaxFile, and starts an
// empty live file. With MaxFile 1 the live file is unlinked and made
// anew rather than truncated: a follower keeps reading the old one (as a
// renamed one) through its descriptor, and never reads a new file from
// the old one's offset, which in the local format is mid-record.
func (r *rotatingFile) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.f = nil
	ext := ""
	if r.o.Compress {
		ext = ".gz"
	}
	for i := r.o.MaxFile - 1; i >= 2; i-- {
		from, to := r.path+"."+strconv.Itoa(i-1)+ext, r.path+"."+strconv.Itoa(i)+ext
		if err := os.Rename(from, to); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if r.o.MaxFile == 1 {
		if err := os.Remove(r.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else {
		first := r.path + ".1"
		if err := os.Rename(r.path, first); err != nil {
			return err
		}
		if r.o.Compress {
			if err := gzipFile(first, first+".gz"); err != nil {
				return err
			}
		}
	}
	return r.open(os.O_TRUNC)
}

// gzipFile compresses from into to (through a temporary name, so a
// reader never sees half a file) and removes from.
func gzipFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, in)
	err = errors.Join(err, zw.Close(), out.Close())
	if err == nil {
		err = os.Rename(to+".tmp", to)
	}
	if err != nil {
		_ = os.Remove(to + ".tmp")
		return err
	}
	return os.Remove(from)
}

func (r *rotatingFile) close() error {
	r.closed = true
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// Files returns the log's files oldest first: the rotated ones that
// exist (path.N[.gz] ... path.1[.gz]), then path itself.
func Files(path string) []string {
	var rotated []string
	for i := 1; ; i++ {
		// The compressed name first: while a rotation compresses, both
		// exist and the plain one is about to go.
		p := path + "." + strconv.Itoa(i) + ".gz"
		if _, err := os.Lstat(p); err != nil {
			p = strings.TrimSuffix(p, ".gz")
			if _, err := os.Lstat(p); err != nil {
				break
			}
		}
		rotated = append(rotated, p)
	}
	out := make([]string, 0, len(rotated)+1)
	for i := len(rotated) - 1; i >= 0; i-- {
		out = append(out, rotated[i])
	}
	return append(out, path)
}

// removeFiles deletes a log and its rotated files.
func removeFiles(path string) error {
	var errs []error
	for _, p := range Files(path) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if strings.HasSuffix(p, ".gz") {
			_ = os.Remove(p + ".tmp")
		}
	}
	return errors.Join(errs...)
}
