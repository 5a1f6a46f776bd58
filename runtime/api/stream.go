package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/docker/go-units"
)

// Message is one message of the JSON progress stream pull and push answer
// with, in dockerd's shape (its jsonmessage.JSONMessage), which the CLI
// renders as progress bars and docker-py decodes.
type Message struct {
	Status   string           `json:"status,omitempty"`
	Progress *ProgressDetail  `json:"progressDetail,omitempty"`
	Bar      string           `json:"progress,omitempty"`
	ID       string           `json:"id,omitempty"`
	Error    *ErrorDetail     `json:"errorDetail,omitempty"`
	ErrorMsg string           `json:"error,omitempty"`
	Aux      *json.RawMessage `json:"aux,omitempty"`
}

// ProgressDetail is a transfer's bytes so far and in all.
type ProgressDetail struct {
	Current int64 `json:"current,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

// ErrorDetail is an error that came after the stream began.
type ErrorDetail struct {
	Message string `json:"message"`
}

// bar draws what dockerd puts in "progress": [====>    ]  1.2MB/3.4MB.
func bar(p *ProgressDetail) string {
	if p == nil || p.Current <= 0 {
		return ""
	}
	if p.Total <= 0 {
		return units.HumanSize(float64(p.Current))
	}
	n := int(float64(p.Current) / float64(p.Total) * 50)
	n = min(max(n, 0), 50)
	arrow := strings.Repeat("=", n)
	if n < 50 {
		arrow += ">" + strings.Repeat(" ", 49-n)
	}
	return "[" + arrow + "] " + units.HumanSize(float64(p.Current)) + "/" + units.HumanSize(float64(p.Total))
}

// stream writes a JSON message stream lazily: the 200 and the headers go
// with the first message, so an error before it still gets its own status
// and JSON error.
type stream struct {
	mu      sync.Mutex // a backend may report from more than one goroutine
	w       http.ResponseWriter
	started bool
	gone    bool // the client went away; later messages are dropped
}

func (s *stream) emit(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
	}
	if m.Bar == "" {
		m.Bar = bar(m.Progress)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return
	}
	if _, err := (flushWriter{s.w}).Write(append(b, '\r', '\n')); err != nil {
		s.gone = true
	}
}

// finish ends the stream with err: as the answer when nothing was sent,
// as the stream's last message (which the CLI prints) otherwise.
func (s *stream) finish(err error) error {
	s.mu.Lock()
	started := s.started
	if err == nil && !started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
	}
	s.mu.Unlock()
	if err == nil || !started {
		return err
	}
	s.emit(Message{Error: &ErrorDetail{Message: err.Error()}, ErrorMsg: err.Error()})
	return nil
}
