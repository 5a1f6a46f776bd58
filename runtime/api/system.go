package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/logs"
)

// SystemBackend is the daemon-wide routes: events and disk usage.
type SystemBackend interface {
	// Events calls ready once subscribed, then writes the kept events
	// since since (zero: none) and new ones until until (zero: until ctx
	// ends) through emit.
	Events(ctx context.Context, since, until time.Time, f filters.Args, ready func(), emit func(events.Message) error) error
	DiskUsage(ctx context.Context) (types.DiskUsage, error)
}

// systemRoute serves /events, /system/df and the prunes `docker system
// prune` calls that are not an object's own: networks (layerlabd keeps
// none yet) and the build cache.
func (rt router) systemRoute(w http.ResponseWriter, r *http.Request, p string) (bool, error) {
	post, get := r.Method == http.MethodPost, r.Method == http.MethodGet
	switch p {
	case "/events":
		return true, only(get, func() error { return rt.events(w, r) })
	case "/system/df":
		return true, only(get, func() error {
			du, err := rt.b.DiskUsage(r.Context())
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, du)
		})
	case "/networks/prune":
		// No user-defined networks exist in layerlabd yet: nothing to prune.
		return true, only(post, func() error {
			return writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
		})
	case "/build/prune":
		return true, only(post, func() error {
			rep, err := rt.b.PruneBuildCache(r.Context())
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, rep)
		})
	}
	return false, nil
}

// events streams GET /events: one JSON message per line, flushed as each
// comes, until the client goes or until passes.
func (rt router) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	since, err := logs.ParseTime("since", q.Get("since"))
	if err != nil {
		return err
	}
	until, err := logs.ParseTime("until", q.Get("until"))
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return fmt.Errorf("until (%s) is before since (%s): %w", q.Get("until"), q.Get("since"), drivers.ErrInvalidArgument)
	}
	f, err := filters.FromJSON(q.Get("filters"))
	if err != nil {
		return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
	}
	// The headers go as soon as the subscription stands, so a client
	// knows that what happens next will reach it.
	started := false
	ready := func() {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		flushWriter{w}.Flush()
	}
	enc := json.NewEncoder(w)
	err = rt.b.Events(r.Context(), since, until, f, ready, func(m events.Message) error {
		if err := enc.Encode(m); err != nil {
			return err
		}
		flushWriter{w}.Flush()
		return nil
	})
	if !started {
		return err // refused before the stream began
	}
	return nil
}
