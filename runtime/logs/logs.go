// Package logs holds layerlabd's log drivers, chosen per container by
// HostConfig.LogConfig and daemon-wide by --log-driver/--log-opt, as
// dockerd's: json-file (Docker's on-disk JSON lines), local (a compact
// binary format of this package's own, see local.go), syslog, fluentd and
// none. A Writer splits a container's output into lines (Messages) and
// hands them to a Logger; drivers that keep a local copy (json-file,
// local, and syslog/fluentd through their dual-logging cache) are read
// back for `docker logs` with tail, since, until and follow across their
// rotated, possibly compressed, files.
package logs

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// ErrOption is a --log-opt the driver does not take, or a bad value.
var ErrOption = fmt.Errorf("log option: %w", drivers.ErrInvalidArgument)

// ErrNotReadable is dockerd's answer to `docker logs` on a container whose
// driver keeps no copy to read.
var ErrNotReadable = fmt.Errorf("configured logging driver does not support reading: %w", drivers.ErrNotImplemented)

// maxLine is where a line without its newline is cut into partial
// messages, as dockerd cuts at 16 KiB, so one endless line cannot grow
// the daemon's memory.
const maxLine = 16 << 10

// Message is one line of a container's output as a Logger gets it.
type Message struct {
	Line    []byte // without its newline
	Stream  string // "stdout" or "stderr"
	Time    time.Time
	Partial bool // no newline ended it: the output closed, or the line was cut at maxLine
}

// Logger is a log driver's sink for one container.
type Logger interface {
	// Log records m; it must not keep m.Line after it returns.
	Log(m *Message) error
	// Close flushes and releases the driver's files or connections.
	Close() error
}

// Entry is one logged line as `docker logs` reads it back.
type Entry struct {
	Log    string    `json:"log"` // with its newline unless partial
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
	// Attrs are the labels and environment variables the labels/env
	// log options select (Attributes), as dockerd's json-file writes them.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Info describes the container a Logger is for: its tag templates and
// records name it, and Dir is where drivers that keep a copy keep it.
type Info struct {
	ContainerID   string
	ContainerName string // without dockerd's leading slash
	ImageName     string // as the user gave it
	ImageID       string // sha256:...
	DaemonName    string // "layerlabd"
	Dir           string // the container's directory
	// Labels and Env are the container's, for the labels/env options
	// (Attributes).
	Labels map[string]string
	Env    []string
}

// Writer splits a container's output into lines and logs each. Writes
// never fail: a driver's error is kept and returned by Close, so a log
// that cannot be written never stops the container.
type Writer struct {
	mu      sync.Mutex
	l       Logger
	partial map[string][]byte // per stream, the line not yet ended
	err     error
	now     func() time.Time
}

// NewWriter logs through l.
func NewWriter(l Logger) *Writer {
	return &Writer{l: l, partial: map[string][]byte{}, now: time.Now}
}

// Write logs p, output of stream ("stdout" or "stderr"): each ended line
// becomes a message; the rest waits for its newline (or maxLine).
func (w *Writer) Write(stream string, p []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.partial[stream], p...)
	for {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 && i <= maxLine {
			w.log(stream, buf[:i], false)
			buf = buf[i+1:]
		} else if len(buf) > maxLine {
			w.log(stream, buf[:maxLine], true)
			buf = buf[maxLine:]
		} else {
			break
		}
	}
	w.partial[stream] = append([]byte(nil), buf...)
}

func (w *Writer) log(stream string, line []byte, partial bool) {
	if err := w.l.Log(&Message{Line: line, Stream: stream, Time: w.now().UTC(), Partial: partial}); err != nil && w.err == nil {
		w.err = err
	}
}

// Close logs what is left of unended lines as partial messages and
// closes the driver; it returns the first error the driver met.
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
			w.log(s, rest, true)
		}
	}
	w.partial = map[string][]byte{}
	if err := w.l.Close(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
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
