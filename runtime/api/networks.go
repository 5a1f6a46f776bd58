package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/layerlab/layerlab/drivers"
)

// ErrForbidden is a refusal dockerd answers with 403: removing a network
// in use or a predefined one, connecting a container that shares another
// network namespace.
var ErrForbidden = errors.New("forbidden")

// NetworkBackend is the daemon's side of the network routes.
type NetworkBackend interface {
	ListNetworks(ctx context.Context, f filters.Args) ([]network.Summary, error)
	InspectNetwork(ctx context.Context, ref string) (network.Inspect, error)
	CreateNetwork(ctx context.Context, req network.CreateRequest) (network.CreateResponse, error)
	RemoveNetwork(ctx context.Context, ref string) error
	PruneNetworks(ctx context.Context, f filters.Args) (network.PruneReport, error)
	ConnectNetwork(ctx context.Context, ref string, o network.ConnectOptions) error
	DisconnectNetwork(ctx context.Context, ref string, o network.DisconnectOptions) error
}

// decodeBody reads a JSON request body into v.
func decodeBody(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
	}
	return nil
}

func queryFilters(r *http.Request) (filters.Args, error) {
	f, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		return f, fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
	}
	return f, nil
}

// networkRoute serves /networks, /networks/create, /networks/prune and
// /networks/{id}[/connect|/disconnect].
func (rt router) networkRoute(w http.ResponseWriter, r *http.Request, p string) error {
	ctx := r.Context()
	post := r.Method == http.MethodPost
	switch p {
	case "/networks":
		return only(r.Method == http.MethodGet, func() error {
			f, err := queryFilters(r)
			if err != nil {
				return err
			}
			list, err := rt.b.ListNetworks(ctx, f)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, list)
		})
	case "/networks/create":
		return only(post, func() error {
			var req network.CreateRequest
			if err := decodeBody(r, &req); err != nil {
				return err
			}
			resp, err := rt.b.CreateNetwork(ctx, req)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusCreated, resp)
		})
	case "/networks/prune":
		return only(post, func() error {
			f, err := queryFilters(r)
			if err != nil {
				return err
			}
			rep, err := rt.b.PruneNetworks(ctx, f)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, rep)
		})
	}
	rest, _ := strings.CutPrefix(p, "/networks/")
	id, op, _ := strings.Cut(rest, "/")
	if id == "" {
		return errPageNotFound
	}
	switch {
	case op == "" && r.Method == http.MethodGet:
		nw, err := rt.b.InspectNetwork(ctx, id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, nw)
	case op == "" && r.Method == http.MethodDelete:
		if err := rt.b.RemoveNetwork(ctx, id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case op == "connect" && post:
		var o network.ConnectOptions
		if err := decodeBody(r, &o); err != nil {
			return err
		}
		if err := rt.b.ConnectNetwork(ctx, id, o); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	case op == "disconnect" && post:
		var o network.DisconnectOptions
		if err := decodeBody(r, &o); err != nil {
			return err
		}
		if err := rt.b.DisconnectNetwork(ctx, id, o); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	case op == "" || op == "connect" || op == "disconnect":
		return errMethod
	}
	return errPageNotFound
}
