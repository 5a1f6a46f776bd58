package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	regtypes "github.com/docker/docker/api/types/registry"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/registry"
)

// RegistryBackend is what pull, push and login call.
type RegistryBackend interface {
	PullImage(ctx context.Context, image, tag, platform string, auth regtypes.AuthConfig, emit func(Message)) error
	PushImage(ctx context.Context, image, tag string, auth regtypes.AuthConfig, emit func(Message)) error
	Login(ctx context.Context, auth regtypes.AuthConfig) (regtypes.AuthenticateOKBody, error)
}

// pullImage answers POST /images/create?fromImage=&tag=&platform= with
// dockerd's progress stream. A registry's refusal (registry.ErrUnauthorized)
// is a 500 here, not a 401: on a 401 the CLI would start an interactive
// login instead of printing the registry's words, and dockerd answers a
// refused pull that way too.
func (rt router) pullImage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	image := q.Get("fromImage")
	if image == "" {
		return fmt.Errorf("fromImage is required (or fromSrc to import): %w", drivers.ErrInvalidArgument)
	}
	auth, err := registry.DecodeAuth(r.Header.Get(regtypes.AuthHeader))
	if err != nil {
		return err
	}
	s := &stream{w: w}
	return s.finish(rt.b.PullImage(r.Context(), image, q.Get("tag"), q.Get("platform"), auth, s.emit))
}

// pushImage answers POST /images/{name}/push?tag=.
func (rt router) pushImage(w http.ResponseWriter, r *http.Request, image string) error {
	auth, err := registry.DecodeAuth(r.Header.Get(regtypes.AuthHeader))
	if err != nil {
		return err
	}
	s := &stream{w: w}
	return s.finish(rt.b.PushImage(r.Context(), image, r.URL.Query().Get("tag"), auth, s.emit))
}

// login answers POST /auth: 200 with {"Status":"Login Succeeded"}, or 401
// with the registry's refusal.
func (rt router) login(w http.ResponseWriter, r *http.Request) error {
	var ac regtypes.AuthConfig
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ac); err != nil {
		return fmt.Errorf("login: the body must be JSON such as {\"username\":...,\"password\":...,\"serveraddress\":...}: %w: %w", drivers.ErrInvalidArgument, err)
	}
	ok, err := rt.b.Login(r.Context(), ac)
	if errors.Is(err, registry.ErrUnauthorized) {
		return writeJSON(w, http.StatusUnauthorized, map[string]string{"message": err.Error()})
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ok)
}
