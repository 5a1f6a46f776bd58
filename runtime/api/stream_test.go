package api

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// TestStream: an error before the first message is the answer itself
// (status and JSON error); one after it is the stream's last message, as
// dockerd sends it, which the CLI prints.
func TestStream(t *testing.T) {
	w := httptest.NewRecorder()
	s := &stream{w: w}
	if err := s.finish(errors.Join(drivers.ErrNotFound)); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("early error: %v, want it back for its status", err)
	}

	w = httptest.NewRecorder()
	s = &stream{w: w}
	s.emit(Message{ID: "abc", Status: "Downloading", Progress: &ProgressDetail{Current: 512, Total: 1024}})
	if err := s.finish(errors.New("blob sha256:x: digest mismatch")); err != nil {
		t.Fatalf("late error returned: %v", err)
	}
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	var msgs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(w.Body.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(sc.Text())), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) != 2 {
		t.Fatalf("messages %v", msgs)
	}
	pd, _ := msgs[0]["progressDetail"].(map[string]any)
	if msgs[0]["id"] != "abc" || pd["current"] != 512.0 || pd["total"] != 1024.0 || !strings.HasPrefix(msgs[0]["progress"].(string), "[=========================>") {
		t.Errorf("progress message %v", msgs[0])
	}
	ed, _ := msgs[1]["errorDetail"].(map[string]any)
	if msgs[1]["error"] != "blob sha256:x: digest mismatch" || ed["message"] != msgs[1]["error"] {
		t.Errorf("error message %v", msgs[1])
	}

	w = httptest.NewRecorder()
	if err := (&stream{w: w}).finish(nil); err != nil || w.Code != 200 {
		t.Errorf("empty stream: %v %d", err, w.Code)
	}
}
