// Package logs is layerlabd's json-file log driver: a container's output
// in Docker's on-disk format (one JSON object per line: log, stream,
// time), rotated by size into ID-json.log.1, .2, ... as dockerd does with
// --log-opt max-size and max-file, and read back across the rotated files
// for `docker logs` with tail, since, until and follow.
package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-units"

	"github.com/layerlab/layerlab/drivers"
)

// Driver is the one log driver layerlabd has.
const Driver = "json-file"

// ErrOption is a --log-opt the driver does not take, or a bad value.
var ErrOption = fmt.Errorf("log option: %w", drivers.ErrInvalidArgument)

// Entry is one line of a json-file log.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// Options are the json-file driver's --log-opt values.
type Options struct {
	MaxSize int64 // bytes a file may reach before it rotates; 0 never rotates
	MaxFile int   // files kept, the live one included (>= 1)
}

// ParseOptions checks a container's --log-opt for the json-file driver:
// max-size (dockerd's units: 10m, 1g), max-file (a count, needs max-size).
// dockerd's labels, env, env-regex and tag only add attributes this
// driver does not record, so they are accepted; compress is refused.
func ParseOptions(opts map[string]string) (Options, error) {
	o := Options{MaxFile: 1}
	for k, v := range opts {
		switch k {
		case "max-size":
			n, err := units.RAMInBytes(v)
			if err != nil || n < 1 {
				return o, fmt.Errorf("max-size=%q: want a positive size such as 10m or 1g: %w", v, ErrOption)
			}
			o.MaxSize = n
		case "max-file":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return o, fmt.Errorf("max-file=%q: want a count of at least 1: %w", v, ErrOption)
			}
			o.MaxFile = n
		case "labels", "labels-regex", "env", "env-regex", "tag":
		default:
			return o, fmt.Errorf("unknown log opt %q for log driver %s (it takes max-size, max-file, labels, env, env-regex, tag): %w", k, Driver, ErrOption)
		}
	}
	if _, ok := opts["max-file"]; ok && o.MaxSize == 0 && o.MaxFile > 1 {
		return o, fmt.Errorf("max-file=%d needs max-size, or the log never rotates: %w", o.MaxFile, ErrOption)
	}
	return o, nil
}

// Writer appends a container's output to its log, one entry per line,
// rotating when the live file would pass MaxSize.
type Writer struct {
	mu      sync.Mutex
	path    string
	opts    Options
	f       *os.File
	size    int64
	partial map[string][]byte // per stream, the line not yet ended
	err     error             // the first write error, returned by Close
	now     func() time.Time
}

// Open opens (appending) the log at path.
func Open(path string, opts Options) (*Writer, error) {
	if opts.MaxFile < 1 {
		opts.MaxFile = 1
	}
	w := &Writer{path: path, opts: opts, partial: map[string][]byte{}, now: time.Now}
	if err := w.open(os.O_APPEND); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open(mode int) error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|mode, 0o640)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("container log: %w", err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write logs p, output of stream ("stdout" or "stderr"): each ended line
// becomes an entry; the rest waits for its newline.
func (w *Writer) Write(stream string, p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		w.entry(stream, buf[:i+1])
		buf = buf[i+1:]
	}
	w.partial[stream] = append([]byte(nil), buf...)
}

func (w *Writer) entry(stream string, line []byte) {
	if w.f == nil {
		return // a rotation failed; the error is kept for Close
	}
	data, _ := json.Marshal(Entry{Log: string(line), Stream: stream, Time: w.now().UTC()})
	data = append(data, '\n')
	if w.opts.MaxSize > 0 && w.size > 0 && w.size+int64(len(data)) > w.opts.MaxSize {
		if err := w.rotate(); err != nil {
			w.keep(err)
			return
		}
	}
	n, err := w.f.Write(data)
	w.size += int64(n)
	w.keep(err)
}

func (w *Writer) keep(err error) {
	if w.err == nil && err != nil {
		w.err = fmt.Errorf("container log %s: %w", w.path, err)
	}
}

// rotate shifts path.N-1 to path.N ... path to path.1, dropping what
// falls past MaxFile, and starts an empty live file. With MaxFile 1 the
// live file is emptied.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return err
	}
	w.f = nil
	for i := w.opts.MaxFile - 1; i >= 1; i-- {
		from := w.path
		if i > 1 {
			from = w.path + "." + strconv.Itoa(i-1)
		}
		if err := os.Rename(from, w.path+"."+strconv.Itoa(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return w.open(os.O_TRUNC)
}

// Close logs what is left of unended lines and closes the file; it
// returns the first error any write met.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	streams := make([]string, 0, len(w.partial))
	for s := range w.partial {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	for _, s := range streams {
		if rest := w.partial[s]; len(rest) > 0 {
			w.entry(s, rest)
		}
	}
	w.partial = map[string][]byte{}
	if w.f != nil {
		w.keep(w.f.Close())
		w.f = nil
	}
	return w.err
}

// Files returns the log's files oldest first: the rotated ones that
// exist (path.N ... path.1), then path itself.
func Files(path string) []string {
	var rotated []string
	for i := 1; ; i++ {
		p := path + "." + strconv.Itoa(i)
		if _, err := os.Lstat(p); err != nil {
			break
		}
		rotated = append(rotated, p)
	}
	out := make([]string, 0, len(rotated)+1)
	for i := len(rotated) - 1; i >= 0; i-- {
		out = append(out, rotated[i])
	}
	return append(out, path)
}

// Remove deletes the log and its rotated files.
func Remove(path string) error {
	var errs []error
	for _, p := range Files(path) {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParseTime reads the API's since and until: a Unix time in seconds with
// an optional fraction ("1733301234.123456789", as the docker CLI sends
// it), or RFC 3339. Empty is the zero time.
func ParseTime(param, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	sec, frac, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	bad := err != nil || len(frac) > 9 || strings.HasPrefix(sec, "+") || s < 0 || s > 1<<40
	var ns int64
	if !bad && frac != "" {
		ns, err = strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		bad = err != nil || strings.ContainsAny(frac, "+-")
	}
	if bad {
		return time.Time{}, fmt.Errorf("%s=%q: want a Unix time in seconds (1733301234 or 1733301234.5) or RFC 3339: %w", param, v, drivers.ErrInvalidArgument)
	}
	return time.Unix(s, ns), nil
}
