package logs

import (
	"encoding/json"
	"sync"
)

// JSONFile is the json-file driver: Docker's on-disk format, one JSON
// object per line (log, stream, time), rotated by max-size/max-file and
// optionally compressed, as dockerd's.
type JSONFile struct {
	mu    sync.Mutex
	out   *rotatingFile
	attrs map[string]string // on every line (labels/env options)
}

// OpenJSONFile opens (appending) the json-file log at path.
func OpenJSONFile(path string, o FileOptions) (*JSONFile, error) {
	out, err := openRotating(path, o)
	if err != nil {
		return nil, err
	}
	return &JSONFile{out: out}, nil
}

// Log appends m as one JSON line; its log field keeps the newline unless
// m is partial, as dockerd writes it.
func (j *JSONFile) Log(m *Message) error {
	line := string(m.Line)
	if !m.Partial {
		line += "\n"
	}
	data, err := json.Marshal(Entry{Log: line, Stream: m.Stream, Time: m.Time, Attrs: j.attrs})
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.out.write(append(data, '\n'))
}

// Close closes the live file.
func (j *JSONFile) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.out.close()
}
