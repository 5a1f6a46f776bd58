package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/layerlab/layerlab/drivers"
)

// FilesystemBackend is the daemon's side of the routes that read or make
// filesystems: commit, changes, export, archive (docker cp), import,
// prune, and the filtered container list.
type FilesystemBackend interface {
	CommitContainer(ctx context.Context, ref string, o container.CommitOptions) (string, error)
	ContainerChanges(ctx context.Context, ref string) ([]container.FilesystemChange, error)
	ExportContainer(ctx context.Context, ref string, w io.Writer) error
	StatContainerPath(ctx context.Context, ref, path string) (container.PathStat, error)
	// ArchiveContainerPath calls ready with the path's stat before it
	// writes the tar.
	ArchiveContainerPath(ctx context.Context, ref, path string, w io.Writer, ready func(container.PathStat)) error
	ExtractToContainer(ctx context.Context, ref, path string, o ExtractOptions, r io.Reader) error
	ImportImage(ctx context.Context, r io.Reader, o ImportOptions) (string, error)
	PruneContainers(ctx context.Context, f filters.Args) (container.PruneReport, error)
	PruneImages(ctx context.Context, f filters.Args) (image.PruneReport, error)
	ListContainersWith(ctx context.Context, o container.ListOptions) ([]container.Summary, error)
}

// ExtractOptions are PUT /containers/{id}/archive's.
type ExtractOptions struct {
	NoOverwriteDirNonDir bool
	CopyUIDGID           bool
}

// ImportOptions are POST /images/create?fromSrc='s.
type ImportOptions struct {
	Ref     string // repo[:tag], empty for an untagged image
	Changes []string
	Message string
}

// statHeader is the header dockerd carries a path's stat in.
const statHeader = "X-Docker-Container-Path-Stat"

func (rt router) filesystemRoute(w http.ResponseWriter, r *http.Request, id, op string) error {
	ctx := r.Context()
	switch {
	case op == "changes" && r.Method == http.MethodGet:
		ch, err := rt.b.ContainerChanges(ctx, id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, ch)
	case op == "export" && r.Method == http.MethodGet:
		return rt.streamTar(w, func(lt *lazyTar) error { return rt.b.ExportContainer(ctx, id, lt) })
	case op == "archive":
		p := r.URL.Query().Get("path")
		if p == "" {
			return fmt.Errorf("path is required: %w", drivers.ErrInvalidArgument)
		}
		switch r.Method {
		case http.MethodHead:
			st, err := rt.b.StatContainerPath(ctx, id, p)
			if err != nil {
				return err
			}
			if err := setStat(w, st); err != nil {
				return err
			}
			w.WriteHeader(http.StatusOK)
			return nil
		case http.MethodGet:
			return rt.streamTar(w, func(lt *lazyTar) error {
				return rt.b.ArchiveContainerPath(ctx, id, p, lt, func(st container.PathStat) { _ = setStat(w, st) })
			})
		case http.MethodPut:
			o := ExtractOptions{NoOverwriteDirNonDir: boolValue(r, "noOverwriteDirNonDir"), CopyUIDGID: boolValue(r, "copyUIDGID")}
			if err := rt.b.ExtractToContainer(ctx, id, p, o, r.Body); err != nil {
				return err
			}
			w.WriteHeader(http.StatusOK)
			return nil
		}
		return errMethod
	}
	return errPageNotFound
}

// streamTar runs write with a lazyTar on w: an error before the first
// byte gets its status, one after cuts the stream short.
func (rt router) streamTar(w http.ResponseWriter, write func(*lazyTar) error) error {
	lt := &lazyTar{w: w}
	err := write(lt)
	if err != nil && lt.started {
		panic(http.ErrAbortHandler)
	}
	if err == nil && !lt.started {
		_, _ = lt.Write(nil) // an empty tree still answers 200
	}
	return err
}

func setStat(w http.ResponseWriter, st container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w.Header().Set(statHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

// commit answers POST /commit; the body, when there is one, is a
// container config that overrides the container's.
func (rt router) commit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := container.CommitOptions{Comment: q.Get("comment"), Author: q.Get("author"), Changes: q["changes"], Pause: true}
	if q.Has("pause") {
		o.Pause = boolValue(r, "pause")
	}
	if repo := q.Get("repo"); repo != "" {
		o.Reference = repo
		if tag := q.Get("tag"); tag != "" {
			o.Reference += ":" + tag
		}
	} else if q.Get("tag") != "" {
		return fmt.Errorf("tag %q given without repo: %w", q.Get("tag"), drivers.ErrInvalidArgument)
	}
	var cfg container.Config
	switch err := json.NewDecoder(r.Body).Decode(&cfg); {
	case err == io.EOF:
	case err != nil:
		return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
	default:
		o.Config = &cfg
	}
	ctr := q.Get("container")
	if ctr == "" {
		return fmt.Errorf("container is required: %w", drivers.ErrInvalidArgument)
	}
	id, err := rt.b.CommitContainer(r.Context(), ctr, o)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, container.CommitResponse{ID: id})
}

// importImage answers POST /images/create?fromSrc=-: the body is the
// rootfs tar. The answer is the JSON progress stream dockerd sends,
// ending with the new image's ID.
func (rt router) importImage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if src := q.Get("fromSrc"); src != "-" {
		return fmt.Errorf("import from %q: layerlabd imports only from the request body (fromSrc=-): %w", src, drivers.ErrNotImplemented)
	}
	o := ImportOptions{Ref: q.Get("repo"), Changes: q["changes"], Message: q.Get("message")}
	if tag := q.Get("tag"); tag != "" && o.Ref != "" {
		o.Ref += ":" + tag
	}
	id, err := rt.b.ImportImage(r.Context(), r.Body, o)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	b, err := json.Marshal(struct {
		Status string `json:"status"`
	}{id})
	if err != nil {
		return err
	}
	_, _ = flushWriter{w}.Write(append(b, '\r', '\n'))
	return nil
}

func (rt router) prune(w http.ResponseWriter, r *http.Request, images bool) error {
	f, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
	}
	if images {
		rep, err := rt.b.PruneImages(r.Context(), f)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, rep)
	}
	rep, err := rt.b.PruneContainers(r.Context(), f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rep)
}

// listContainers answers GET /containers/json with its filters, size
// and limit.
func (rt router) listContainers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f, err := filters.FromJSON(q.Get("filters"))
	if err != nil {
		return fmt.Errorf("filters: %w: %w", drivers.ErrInvalidArgument, err)
	}
	o := container.ListOptions{All: boolValue(r, "all"), Size: boolValue(r, "size"), Filters: f}
	if l := q.Get("limit"); l != "" {
		if o.Limit, err = strconv.Atoi(l); err != nil {
			return fmt.Errorf("limit=%q: %w", l, drivers.ErrInvalidArgument)
		}
	}
	list, err := rt.b.ListContainersWith(r.Context(), o)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}
