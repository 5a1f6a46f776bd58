package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/docker/docker/api/types/filters"

	"github.com/layerlab/layerlab/drivers"
)

func (rt router) listImages(w http.ResponseWriter, r *http.Request) error {
	f, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
	}
	list, err := rt.b.ListImages(r.Context(), f, boolValue(r, "all"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

// loadImages loads the whole archive before answering, so a refused
// archive gets its status code; the answer is then the JSON message
// stream dockerd sends.
func (rt router) loadImages(w http.ResponseWriter, r *http.Request) error {
	loaded, err := rt.b.LoadImages(r.Context(), r.Body)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	// Flushed at once, so the answer goes chunked as dockerd's does:
	// docker-py reads a response without chunks as one JSON document and
	// fails on the second message.
	flushWriter{w}.Flush()
	for _, l := range loaded {
		msg := "Loaded image ID: " + l.ID.String()
		if l.Ref != "" {
			msg = "Loaded image: " + l.Ref
		}
		if err := writeStream(w, msg+"\n"); err != nil {
			return nil // the client went away; nothing to tell it
		}
	}
	return nil
}

// writeStream writes one message of a JSON message stream and flushes it.
func writeStream(w http.ResponseWriter, msg string) error {
	b, err := json.Marshal(struct {
		Stream string `json:"stream"`
	}{msg})
	if err != nil {
		return err
	}
	_, err = flushWriter{w}.Write(append(b, '\r', '\n'))
	return err
}

// lazyTar sets the tar content type at the first byte, so an error found
// before anything is written still gets a JSON error and its status.
type lazyTar struct {
	w       http.ResponseWriter
	started bool
}

func (l *lazyTar) Write(p []byte) (int, error) {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", "application/x-tar")
		l.w.WriteHeader(http.StatusOK)
	}
	return l.w.Write(p)
}

func (rt router) saveImages(w http.ResponseWriter, r *http.Request, names []string) error {
	if len(names) == 0 {
		return fmt.Errorf("no image names to save: %w", drivers.ErrInvalidArgument)
	}
	lt := &lazyTar{w: w}
	err := rt.b.SaveImages(r.Context(), lt, names)
	if err != nil && lt.started {
		// Too late for a status: cut the stream short so the client
		// sees a truncated tar, not a whole one.
		panic(http.ErrAbortHandler)
	}
	return err
}

func (rt router) inspectImage(w http.ResponseWriter, r *http.Request, name string) error {
	img, err := rt.b.InspectImage(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, img)
}

func (rt router) imageHistory(w http.ResponseWriter, r *http.Request, name string) error {
	h, err := rt.b.ImageHistory(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, h)
}

func (rt router) tagImage(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	repo, tag := q.Get("repo"), q.Get("tag")
	if repo == "" {
		return fmt.Errorf("repo is required: %w", drivers.ErrInvalidArgument)
	}
	ref := repo
	if tag != "" {
		ref += ":" + tag
	}
	if err := rt.b.TagImage(r.Context(), name, ref); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (rt router) deleteImage(w http.ResponseWriter, r *http.Request, name string) error {
	out, err := rt.b.DeleteImage(r.Context(), name, boolValue(r, "force"), !boolValue(r, "noprune"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
