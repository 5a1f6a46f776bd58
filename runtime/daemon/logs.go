package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/layerlab/layerlab/drivers"
)

// logEntry is one line of Docker's json-file log driver.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// jsonLog appends a container's output to its json-file log, one entry
// per line as dockerd writes it.
type jsonLog struct {
	mu      sync.Mutex
	f       *os.File
	partial map[string][]byte // per stream, the line not yet ended
}

func openLog(path string) (*jsonLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	return &jsonLog{f: f, partial: map[string][]byte{}}, nil
}

func (j *jsonLog) write(stream string, p []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	buf := append(j.partial[stream], p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		j.entry(stream, buf[:i+1])
		buf = buf[i+1:]
	}
	j.partial[stream] = append([]byte(nil), buf...)
}

func (j *jsonLog) entry(stream string, line []byte) {
	data, _ := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	_, _ = j.f.Write(append(data, '\n'))
}

// Close writes what is left of unended lines and closes the file.
func (j *jsonLog) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for stream, rest := range j.partial {
		if len(rest) > 0 {
			j.entry(stream, rest)
		}
	}
	return j.f.Close()
}

// fanout copies a running container's output to its log and to the
// streams attached to it.
type fanout struct {
	mu    sync.Mutex
	sinks []*sink
}

// sink is one attach: its stdout and stderr writers, and done, closed
// when the container's output has ended.
type sink struct {
	out, err io.Writer
	done     chan struct{}
}

type streamWriter struct {
	f      *fanout
	log    *jsonLog
	stream string
}

func (f *fanout) writer(log *jsonLog, stream string) io.Writer {
	return streamWriter{f: f, log: log, stream: stream}
}

// Write never fails: a client that went away must not stop the
// container's output, so a failing sink is dropped.
func (w streamWriter) Write(p []byte) (int, error) {
	w.log.write(w.stream, p)
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	kept := w.f.sinks[:0]
	for _, s := range w.f.sinks {
		dst := s.out
		if w.stream == "stderr" {
			dst = s.err
		}
		if dst != nil {
			if _, err := dst.Write(p); err != nil {
				close(s.done)
				continue
			}
		}
		kept = append(kept, s)
	}
	w.f.sinks = kept
	return len(p), nil
}

// add adds s and calls ready (which answers the attach request) with no
// output in between, so the answer comes first on the connection and no
// output after it is missed.
func (f *fanout) add(s *sink, ready func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ready()
	f.sinks = append(f.sinks, s)
}

// close ends every attach: the container's output is over.
func (f *fanout) close() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sinks {
		close(s.done)
	}
	f.sinks = nil
}

// AttachContainer streams the container's stdout and stderr to conn
// (multiplexed with 8-byte frames unless it has a TTY) until its output
// ends or ctx is done, and copies stdin (nil for none) into the container
// when it was created with OpenStdin; with StdinOnce, stdin's end closes
// the container's. A container that does not run yet is attached to its
// next start.
func (d *Daemon) AttachContainer(ctx context.Context, ref string, stdin io.Reader, stdout, stderr bool, conn io.Writer, ready func()) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	s := &sink{done: make(chan struct{})}
	if r.Config.Tty {
		if stdout || stderr {
			s.out, s.err = conn, conn
		}
	} else {
		if stdout {
			s.out = stdcopy.NewStdWriter(conn, stdcopy.Stdout)
		}
		if stderr {
			s.err = stdcopy.NewStdWriter(conn, stdcopy.Stderr)
		}
	}
	l := d.live(r.ID)
	l.mu.Lock()
	if l.streams == nil {
		l.streams = &fanout{}
	}
	l.streams.add(s, ready)
	if stdin != nil && r.Config.OpenStdin {
		_, w := l.stdin()
		go func() {
			_, _ = io.Copy(w, stdin)
			if r.Config.StdinOnce {
				_ = w.Close()
			}
		}()
	}
	l.mu.Unlock()
	select {
	case <-s.done:
	case <-l.removed:
	case <-ctx.Done():
	}
	return nil
}

// LogsContainer answers GET /containers/{id}/logs from the json-file log:
// the streams asked for, the last tail lines ("all" or empty for all),
// with timestamps if asked, and with follow until a running container
// exits or ctx ends. Output is multiplexed unless the container has a TTY.
func (d *Daemon) LogsContainer(ctx context.Context, ref string, o container.LogsOptions, w io.Writer, ready func()) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	if !o.ShowStdout && !o.ShowStderr {
		return fmt.Errorf("you must choose at least one stream: %w", drivers.ErrInvalidArgument)
	}
	tail := -1
	if o.Tail != "" && o.Tail != "all" {
		if tail, err = strconv.Atoi(o.Tail); err != nil || tail < 0 {
			return fmt.Errorf("tail %q: want a number or all: %w", o.Tail, drivers.ErrInvalidArgument)
		}
	}
	l := d.live(r.ID)
	l.mu.Lock()
	running := l.c != nil
	exited := l.exit
	l.mu.Unlock()
	ready()
	out, errw := w, w
	if !r.Config.Tty {
		out, errw = stdcopy.NewStdWriter(w, stdcopy.Stdout), stdcopy.NewStdWriter(w, stdcopy.Stderr)
	}
	emit := func(e logEntry) error {
		if (e.Stream == "stderr" && !o.ShowStderr) || (e.Stream != "stderr" && !o.ShowStdout) {
			return nil
		}
		msg := e.Log
		if o.Timestamps {
			msg = e.Time.Format(time.RFC3339Nano) + " " + msg
		}
		dst := out
		if e.Stream == "stderr" {
			dst = errw
		}
		_, err := io.WriteString(dst, msg)
		return err
	}
	f, err := os.Open(d.logPath(r.ID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	lr := &logReader{br: bufio.NewReader(f)}
	var entries []logEntry
	for {
		e, ok := lr.next()
		if !ok {
			break
		}
		entries = append(entries, e)
	}
	if tail >= 0 && len(entries) > tail {
		entries = entries[len(entries)-tail:]
	}
	for _, e := range entries {
		if err := emit(e); err != nil {
			return nil // the client went away
		}
	}
	if !o.Follow || !running {
		return nil
	}
	flush(w)
	// Follow by polling the file: simple, and a log line is never lost
	// between the read above and a subscription.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for done := false; ; {
		for {
			e, ok := lr.next()
			if !ok {
				break
			}
			if err := emit(e); err != nil {
				return nil
			}
		}
		flush(w)
		if done {
			return nil
		}
		select {
		case <-exited:
			done = true // one more read for the last lines
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// logReader reads whole log lines; a line still being written is kept
// for the next read.
type logReader struct {
	br      *bufio.Reader
	pending []byte
}

func (lr *logReader) next() (logEntry, bool) {
	for {
		line, err := lr.br.ReadBytes('\n')
		lr.pending = append(lr.pending, line...)
		if err != nil {
			return logEntry{}, false
		}
		var e logEntry
		ok := json.Unmarshal(lr.pending, &e) == nil
		lr.pending = lr.pending[:0]
		if ok {
			return e, true
		}
	}
}

func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() }); ok {
		f.Flush()
	}
}
