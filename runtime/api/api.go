// Package api serves the Docker Engine API (1.41) over net/http: it
// decodes a request, calls the daemon (a Backend passed in; handlers hold
// no state) and writes Docker-shaped answers and errors, so the docker CLI
// and docker-py drive layerlabd unmodified.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/images"
)

// The API versions served: MaxVersion is what layerlabd speaks and
// announces; older clients down to MinVersion get the same shapes, which
// are compatible for the routes served.
const (
	MaxVersion = "1.41"
	MinVersion = "1.24"
)

// Backend is what the routes call: the daemon.
type Backend interface {
	Version(ctx context.Context) types.Version
	Info(ctx context.Context) (system.Info, error)
	LoadImages(ctx context.Context, r io.Reader) ([]images.Loaded, error)
	SaveImages(ctx context.Context, w io.Writer, names []string) error
	// ListImages lists the images f passes; all includes a build's
	// intermediate images.
	ListImages(ctx context.Context, f filters.Args, all bool) ([]image.Summary, error)
	InspectImage(ctx context.Context, name string) (image.InspectResponse, error)
	ImageHistory(ctx context.Context, name string) ([]image.HistoryResponseItem, error)
	TagImage(ctx context.Context, name, ref string) error
	DeleteImage(ctx context.Context, name string, force, prune bool) ([]image.DeleteResponse, error)
	ContainerBackend
	FilesystemBackend
	OpsBackend
	SystemBackend
	ResourceBackend
	VolumeBackend
	RegistryBackend
	BuildBackend
	NetworkBackend
}

// Handler returns the API's http.Handler over b.
func Handler(b Backend) http.Handler { return router{b: b} }

type router struct{ b Backend }

// versioned is a path with a version prefix, /v1.41/info.
var versioned = regexp.MustCompile(`^/v([0-9]+)\.([0-9]+)(/.*)$`)

func (rt router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Api-Version", MaxVersion)
	h.Set("Docker-Experimental", "false")
	h.Set("Ostype", "linux")
	h.Set("Server", "layerlabd")
	p := r.URL.Path
	if m := versioned.FindStringSubmatch(p); m != nil {
		if err := checkVersion(m[1], m[2]); err != nil {
			writeError(w, err)
			return
		}
		p = m[3]
	}
	if err := rt.route(w, r, p); err != nil {
		writeError(w, err)
	}
}

// checkVersion refuses API versions outside MinVersion..MaxVersion, with
// dockerd's wording.
func checkVersion(major, minor string) error {
	mi, _ := strconv.Atoi(minor)
	switch {
	case major != "1" || mi > 41:
		return fmt.Errorf("client version %s.%s is too new. Maximum supported API version is %s: %w", major, minor, MaxVersion, drivers.ErrInvalidArgument)
	case mi < 24:
		return fmt.Errorf("client version %s.%s is too old. Minimum supported API version is %s, please upgrade your client to a newer version: %w", major, minor, MinVersion, drivers.ErrInvalidArgument)
	}
	return nil
}

// errPageNotFound answers a route that does not exist, as dockerd does.
var errPageNotFound = fmt.Errorf("page not found: %w", drivers.ErrNotFound)

// errMethod is a known route asked with the wrong method.
var errMethod = errors.New("method not allowed")

func (rt router) route(w http.ResponseWriter, r *http.Request, p string) error {
	ctx := r.Context()
	get := r.Method == http.MethodGet
	switch p {
	case "/_ping":
		if !get && r.Method != http.MethodHead {
			return errMethod
		}
		return ping(w, r)
	case "/version":
		return only(get, func() error { return writeJSON(w, http.StatusOK, rt.b.Version(ctx)) })
	case "/info":
		return only(get, func() error {
			info, err := rt.b.Info(ctx)
			if err != nil {
				return err
			}
			return writeJSON(w, http.StatusOK, info)
		})
	case "/images/json":
		return only(get, func() error { return rt.listImages(w, r) })
	case "/images/create":
		return only(r.Method == http.MethodPost, func() error {
			if r.URL.Query().Has("fromSrc") {
				return rt.importImage(w, r)
			}
			return rt.pullImage(w, r)
		})
	case "/auth":
		return only(r.Method == http.MethodPost, func() error { return rt.login(w, r) })
	case "/build":
		return only(r.Method == http.MethodPost, func() error { return rt.build(w, r) })
	case "/session":
		// BuildKit's session: the CLI opens it only for a BuildKit build.
		return errBuildKit
	case "/commit":
		return only(r.Method == http.MethodPost, func() error { return rt.commit(w, r) })
	case "/images/prune":
		return only(r.Method == http.MethodPost, func() error { return rt.prune(w, r, true) })
	case "/images/load":
		return only(r.Method == http.MethodPost, func() error { return rt.loadImages(w, r) })
	case "/images/get":
		return only(get, func() error { return rt.saveImages(w, r, r.URL.Query()["names"]) })
	}
	if ok, err := rt.systemRoute(w, r, p); ok {
		return err
	}
	if strings.HasPrefix(p, "/containers/") {
		return rt.containerRoute(w, r, p)
	}
	if p == "/networks" || strings.HasPrefix(p, "/networks/") {
		return rt.networkRoute(w, r, p)
	}
	if p == "/volumes" || strings.HasPrefix(p, "/volumes/") {
		return rt.volumeRoute(w, r, p)
	}
	if strings.HasPrefix(p, "/exec/") {
		return rt.execRoute(w, r, p)
	}
	rest, ok := strings.CutPrefix(p, "/images/")
	if !ok || rest == "" {
		return errPageNotFound
	}
	for suffix, handle := range map[string]func(string) error{
		"/json":    func(n string) error { return only(get, func() error { return rt.inspectImage(w, r, n) }) },
		"/history": func(n string) error { return only(get, func() error { return rt.imageHistory(w, r, n) }) },
		"/get":     func(n string) error { return only(get, func() error { return rt.saveImages(w, r, []string{n}) }) },
		"/tag": func(n string) error {
			return only(r.Method == http.MethodPost, func() error { return rt.tagImage(w, r, n) })
		},
		"/push": func(n string) error {
			return only(r.Method == http.MethodPost, func() error { return rt.pushImage(w, r, n) })
		},
	} {
		if n, ok := strings.CutSuffix(rest, suffix); ok && n != "" {
			return handle(n)
		}
	}
	if r.Method == http.MethodDelete {
		return rt.deleteImage(w, r, rest)
	}
	return errPageNotFound
}

// only runs f when the method matched.
func only(ok bool, f func() error) error {
	if !ok {
		return errMethod
	}
	return f()
}

func ping(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	// The classic builder: the docker CLI then builds without BuildKit.
	h.Set("Builder-Version", "1")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = io.WriteString(w, "OK")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Status maps an error to the status dockerd would answer with.
func Status(err error) int {
	switch {
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed
	case errors.Is(err, drivers.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, drivers.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, drivers.ErrAlreadyExists), errors.Is(err, drivers.ErrFailedPrecondition):
		return http.StatusConflict
	case errors.Is(err, drivers.ErrNotImplemented):
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// writeError writes err as dockerd does: {"message": "..."}.
func writeError(w http.ResponseWriter, err error) {
	_ = writeJSON(w, Status(err), map[string]string{"message": err.Error()})
}

// boolValue reads a boolean query parameter as dockerd does: absent, "",
// "0", "no", "false" and "none" are false.
func boolValue(r *http.Request, key string) bool {
	switch strings.ToLower(strings.TrimSpace(r.URL.Query().Get(key))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}
