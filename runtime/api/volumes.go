package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"github.com/layerlab/layerlab/drivers"
)

// VolumeBackend is the daemon's side of the volume routes.
type VolumeBackend interface {
	CreateVolume(ctx context.Context, o volume.CreateOptions) (*volume.Volume, error)
	ListVolumes(ctx context.Context, f filters.Args) (volume.ListResponse, error)
	InspectVolume(ctx context.Context, name string) (*volume.Volume, error)
	RemoveVolume(ctx context.Context, name string, force bool) error
	// PruneVolumes removes the unused volumes the filters select; with
	// anonymousOnly (API 1.42+ without the all filter) only anonymous ones.
	PruneVolumes(ctx context.Context, f filters.Args, anonymousOnly bool) (volume.PruneReport, error)
}

// volumeRoute serves /volumes, /volumes/create, /volumes/prune and
// /volumes/{name}.
func (rt router) volumeRoute(w http.ResponseWriter, r *http.Request, p string) error {
	ctx := r.Context()
	switch p {
	case "/volumes":
		return only(r.Method == http.MethodGet, func() error {
			f, err := filters.FromJSON(r.URL.Query().Get("filters"))
			if err != nil {
				return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
			}
			list, err := rt.b.ListVolumes(ctx, f)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, list)
		})
	case "/volumes/create":
		return only(r.Method == http.MethodPost, func() error {
			var o volume.CreateOptions
			if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
				return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
			}
			v, err := rt.b.CreateVolume(ctx, o)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusCreated, v)
		})
	case "/volumes/prune":
		return only(r.Method == http.MethodPost, func() error {
			f, err := filters.FromJSON(r.URL.Query().Get("filters"))
			if err != nil {
				return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
			}
			// API 1.42 made prune take only anonymous volumes unless
			// all=true; older clients (1.41, what layerlabd announces)
			// prune every unused volume.
			anonymousOnly := false
			if m := versioned.FindStringSubmatch(r.URL.Path); m != nil {
				if mi, _ := strconv.Atoi(m[2]); mi >= 42 {
					all, err := f.GetBoolOrDefault("all", false)
					if err != nil {
						return fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
					}
					anonymousOnly = !all
				}
			}
			rep, err := rt.b.PruneVolumes(ctx, f, anonymousOnly)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, rep)
		})
	}
	name, _ := strings.CutPrefix(p, "/volumes/")
	if name == "" || strings.Contains(name, "/") {
		return errPageNotFound
	}
	switch r.Method {
	case http.MethodGet:
		v, err := rt.b.InspectVolume(ctx, name)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, v)
	case http.MethodDelete:
		if err := rt.b.RemoveVolume(ctx, name, boolValue(r, "force")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errMethod
}
