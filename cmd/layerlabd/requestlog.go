package main

import (
	"bufio"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// logged logs each API call at debug level (-D) once it is answered: its
// method, path, status, duration, the remote address and, over TLS, the
// client certificate's subject. A hijacked call (attach, exec start) is
// logged with status 101 when it ends.
func logged(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.Enabled(r.Context(), slog.LevelDebug) {
			h.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		start := time.Now()
		defer func() {
			attrs := []any{"method", r.Method, "path", r.URL.RequestURI(), "status", rec.status(), "duration", time.Since(start), "remote", r.RemoteAddr}
			if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
				attrs = append(attrs, "client", r.TLS.PeerCertificates[0].Subject.String())
			}
			log.Debug("api", attrs...)
		}()
		h.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status a handler answered with. It keeps
// the optional interfaces the API's handlers assert on (http.Flusher for
// streams, http.Hijacker for attach and exec).
type statusRecorder struct {
	http.ResponseWriter
	code     int
	hijacked bool
}

func (s *statusRecorder) status() int {
	switch {
	case s.code != 0:
		return s.code
	case s.hijacked:
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be hijacked")
	}
	s.hijacked = true
	return hj.Hijack()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
