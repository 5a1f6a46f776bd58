package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	buildtypes "github.com/docker/docker/api/types/build"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/build"
	"github.com/layerlab/layerlab/runtime/images"
)

// BuildBackend runs builds.
type BuildBackend interface {
	Build(ctx context.Context, r io.Reader, o build.Options, out build.Output) (string, error)
	PruneBuildCache(ctx context.Context) (buildtypes.CachePruneReport, error)
}

// errBuildKit answers a BuildKit client: layerlabd runs the classic
// builder only.
var errBuildKit = fmt.Errorf("layerlabd has no BuildKit; it runs the classic builder: set DOCKER_BUILDKIT=0 (docker build) and build again: %w", drivers.ErrNotImplemented)

// buildOptions reads POST /build's query. What the classic builder here
// cannot honour is refused, saying which flag to drop.
func buildOptions(r *http.Request) (build.Options, error) {
	q := r.URL.Query()
	var o build.Options
	if q.Get("version") == "2" {
		return o, errBuildKit
	}
	if remote := q.Get("remote"); remote != "" {
		return o, fmt.Errorf("remote build contexts (%s) are not supported: layerlabd fetches nothing; send the context itself: %w", remote, drivers.ErrNotImplemented)
	}
	for _, flag := range []string{"pull", "squash"} {
		if boolValue(r, flag) {
			return o, fmt.Errorf("--%s is not supported by layerlabd's builder (it pulls nothing; images come from docker load): drop --%s: %w", flag, flag, drivers.ErrNotImplemented)
		}
	}
	for _, limit := range []string{"memory", "memswap", "cpushares", "cpuperiod", "cpuquota", "shmsize"} {
		if v := q.Get(limit); v != "" && v != "0" && v != "-1" {
			return o, fmt.Errorf("%s=%s: layerlabd's builder runs its steps without resource limits; drop the option: %w", limit, v, drivers.ErrNotImplemented)
		}
	}
	for _, opt := range []string{"cpusetcpus", "cpusetmems", "cgroupparent", "isolation"} {
		if v := q.Get(opt); v != "" && v != "default" {
			return o, fmt.Errorf("%s=%s: not supported by layerlabd's builder; drop the option: %w", opt, v, drivers.ErrNotImplemented)
		}
	}
	if v := q.Get("extrahosts"); v != "" && v != "[]" && v != "null" {
		return o, fmt.Errorf("extrahosts (--add-host) is not supported by layerlabd's builder; drop the option: %w", drivers.ErrNotImplemented)
	}
	switch m := q.Get("networkmode"); m {
	case "", "default", "none", "host":
	default:
		return o, fmt.Errorf("networkmode %q: the build's steps run in the daemon's default network; use default, none or host: %w", m, drivers.ErrInvalidArgument)
	}
	switch p := q.Get("platform"); p {
	case "", "linux", "linux/amd64":
	default:
		return o, fmt.Errorf("platform %q: layerlabd builds linux/amd64 only: %w", p, drivers.ErrInvalidArgument)
	}
	var err error
	if o.BuildArgs, err = build.ParseArgs(q.Get("buildargs")); err != nil {
		return o, err
	}
	if o.Labels, err = build.ParseLabels(q.Get("labels")); err != nil {
		return o, err
	}
	for _, t := range q["t"] {
		if _, err := images.NormalizeRef(t); err != nil {
			return o, fmt.Errorf("invalid tag %q: %w", t, err)
		}
		o.Tags = append(o.Tags, t)
	}
	o.Dockerfile = q.Get("dockerfile")
	o.Target = q.Get("target")
	o.NoCache = boolValue(r, "nocache")
	o.Quiet = boolValue(r, "q")
	o.ForceRemove = boolValue(r, "forcerm")
	// As dockerd: rm is on unless a client says otherwise.
	o.Remove = !q.Has("rm") || boolValue(r, "rm")
	return o, nil
}

// streamOutput writes a build's progress as the classic JSON message
// stream; the headers go with the first message, so an error found
// before any output still gets its status code.
type streamOutput struct {
	w       http.ResponseWriter
	started bool
	gone    bool // the client went away: nothing more is written
}

func (s *streamOutput) write(v any) {
	if s.gone {
		return
	}
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	if _, err := (flushWriter{s.w}).Write(append(b, '\r', '\n')); err != nil {
		s.gone = true
	}
}

func (s *streamOutput) Stream(text string) {
	s.write(struct {
		Stream string `json:"stream"`
	}{text})
}

func (s *streamOutput) Aux(id string) {
	s.write(map[string]any{"aux": map[string]string{"ID": id}})
}

// build answers POST /build with the context tar in the body.
func (rt router) build(w http.ResponseWriter, r *http.Request) error {
	o, err := buildOptions(r)
	if err != nil {
		return err
	}
	out := &streamOutput{w: w}
	_, err = rt.b.Build(r.Context(), r.Body, o, out)
	if err == nil {
		return nil
	}
	if !out.started {
		return err
	}
	msg := err.Error()
	detail := map[string]any{"message": msg}
	var run *build.RunError
	if errors.As(err, &run) {
		detail["code"] = run.Code // what the CLI exits with
	}
	out.write(map[string]any{"errorDetail": detail, "error": msg})
	return nil
}
