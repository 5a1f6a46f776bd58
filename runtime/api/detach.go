package api

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// DefaultDetachKeys are dockerd's: ctrl-p then ctrl-q.
const DefaultDetachKeys = "ctrl-p,ctrl-q"

// ErrDetached is what an attach's stdin returns once the client typed
// the detach keys: the attach ends, the container runs on, and its stdin
// stays open (a StdinOnce container's is not closed by a detach).
var ErrDetached = errors.New("read escape sequence")

// ParseDetachKeys reads a detach key sequence as dockerd does: a comma-
// separated list of single characters and ctrl-<key> (ctrl-a..ctrl-z,
// ctrl-@, ctrl-[, ctrl-\, ctrl-], ctrl-^, ctrl-_). Empty is the default.
func ParseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		s = DefaultDetachKeys
	}
	var out []byte
	for _, k := range strings.Split(s, ",") {
		ctrl, isCtrl := strings.CutPrefix(strings.ToLower(k), "ctrl-")
		switch {
		case isCtrl && len(ctrl) == 1 && ctrl[0] >= 'a' && ctrl[0] <= 'z':
			out = append(out, ctrl[0]-'a'+1)
		case isCtrl && len(ctrl) == 1 && strings.Contains("@[\\]^_", ctrl):
			out = append(out, ctrl[0]-'@')
		case !isCtrl && len(k) == 1:
			out = append(out, k[0])
		default:
			return nil, fmt.Errorf("invalid detach keys %q: %q is neither one character nor ctrl-<a-z, @, [, \\, ], ^ or _>: %w", s, k, drivers.ErrInvalidArgument)
		}
	}
	return out, nil
}

// escapeReader passes r through until the detach keys come, then returns
// ErrDetached. The bytes of a partial match are held back and passed on
// when the match fails, so nothing the user typed is lost.
type escapeReader struct {
	r       io.Reader
	keys    []byte
	matched int    // keys matched so far
	pending []byte // what to hand out before reading more
	done    bool
	// onDetach runs when the keys have come: it ends the attach.
	onDetach func()
}

func (e *escapeReader) Read(p []byte) (int, error) {
	for {
		if len(e.pending) > 0 {
			n := copy(p, e.pending)
			e.pending = e.pending[n:]
			return n, nil
		}
		if e.done {
			return 0, ErrDetached
		}
		buf := make([]byte, len(p))
		n, err := e.r.Read(buf)
		for _, b := range buf[:n] {
			switch {
			case b == e.keys[e.matched]:
				e.matched++
				if e.matched == len(e.keys) {
					e.done = true
					e.matched = 0
					if e.onDetach != nil {
						e.onDetach()
					}
				}
			default:
				// The held-back keys were input after all.
				e.pending = append(e.pending, e.keys[:e.matched]...)
				e.matched = 0
				if b == e.keys[0] {
					e.matched = 1
				} else {
					e.pending = append(e.pending, b)
				}
			}
			if e.done {
				break
			}
		}
		if err != nil && !e.done && e.matched > 0 {
			// The input ended inside a partial match: it was input.
			e.pending = append(e.pending, e.keys[:e.matched]...)
			e.matched = 0
		}
		if len(e.pending) == 0 && err != nil {
			return 0, err
		}
		if len(e.pending) == 0 && !e.done {
			continue
		}
	}
}
