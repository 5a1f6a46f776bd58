package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// ResourceBackend is the daemon's side of docker stats and docker update.
type ResourceBackend interface {
	// ContainerStats sends one reading, or one a second while stream
	// holds and ctx lasts.
	ContainerStats(ctx context.Context, ref string, stream, oneShot bool, send func(container.StatsResponse) error) error
	UpdateContainer(ctx context.Context, ref string, upd container.UpdateConfig) (container.UpdateResponse, error)
}

// containerStats streams the readings as JSON objects, one per line,
// flushed as they come (stream defaults to true, as in dockerd).
func (rt router) containerStats(w http.ResponseWriter, r *http.Request, id string) error {
	stream := true
	if v := r.URL.Query().Get("stream"); v != "" {
		stream = boolValue(r, "stream")
	}
	oneShot := !stream && boolValue(r, "one-shot")
	started := false
	fw := flushWriter{w}
	enc := json.NewEncoder(fw)
	err := rt.b.ContainerStats(r.Context(), id, stream, oneShot, func(s container.StatsResponse) error {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
		}
		return enc.Encode(s)
	})
	if started {
		return nil // the client went away, or a reading failed mid-stream
	}
	return err
}

func (rt router) updateContainer(w http.ResponseWriter, r *http.Request, id string) error {
	var upd container.UpdateConfig
	if err := json.NewDecoder(r.Body).Decode(&upd); err != nil {
		return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
	}
	resp, err := rt.b.UpdateContainer(r.Context(), id, upd)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}
