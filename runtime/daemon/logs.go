package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/logs"
)

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
	log    *logs.Writer
	stream string
}

func (f *fanout) writer(log *logs.Writer, stream string) io.Writer {
	return streamWriter{f: f, log: log, stream: stream}
}

// Write never fails: a client that went away must not stop the
// container's output, so a failing sink is dropped.
func (w streamWriter) Write(p []byte) (int, error) {
	w.log.Write(w.stream, p)
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
	d.containerEvent(r, eventtypes.ActionAttach, nil)
	if stdin != nil && r.Config.OpenStdin {
		_, w := l.stdin()
		go func() {
			// Only the client's EOF ends a StdinOnce container's stdin; a
			// detach (an error) leaves it open.
			if _, err := io.Copy(w, stdin); err == nil && r.Config.StdinOnce {
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

// LogsContainer answers GET /containers/{id}/logs from the log its driver
// keeps (json-file, local, or a remote driver's dual-logging cache):
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
	src, err := d.logSource(r)
	if err != nil {
		return err
	}
	tail := -1
	if o.Tail != "" && o.Tail != "all" {
		if tail, err = strconv.Atoi(o.Tail); err != nil || tail < 0 {
			return fmt.Errorf("tail %q: want a number or all: %w", o.Tail, drivers.ErrInvalidArgument)
		}
	}
	ro := logs.ReadOptions{Tail: tail}
	if ro.Since, err = logs.ParseTime("since", o.Since); err != nil {
		return err
	}
	if ro.Until, err = logs.ParseTime("until", o.Until); err != nil {
		return err
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
	emit := func(e logs.Entry) error {
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
	fl, err := src.Read(ro, emit)
	if err != nil || fl == nil {
		return ignoreGone(err)
	}
	defer fl.Close()
	if !o.Follow || !running || (!ro.Until.IsZero() && time.Now().After(ro.Until)) {
		return nil
	}
	flush(w)
	// Follow by polling the file: simple, and a log line is never lost
	// between the read above and a subscription.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for done := false; ; {
		if err := fl.Poll(emit); err != nil {
			return ignoreGone(err)
		}
		flush(w)
		if done || (!ro.Until.IsZero() && time.Now().After(ro.Until)) {
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

// ignoreGone drops the error of a write to a client that went away; a
// log that cannot be read is still an error.
func ignoreGone(err error) error {
	var pe *os.PathError
	if err == nil || !errors.As(err, &pe) {
		return nil
	}
	return err
}

func flush(w io.Writer) {
	if f, ok := w.(interface{ Flush() }); ok {
		f.Flush()
	}
}
