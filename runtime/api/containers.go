package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// ContainerBackend is the daemon's side of the container routes.
type ContainerBackend interface {
	CreateContainer(ctx context.Context, name string, req container.CreateRequest) (container.CreateResponse, error)
	StartContainer(ctx context.Context, ref string) error
	// WaitContainer calls ready once the waiter is registered, before it
	// blocks.
	WaitContainer(ctx context.Context, ref string, cond container.WaitCondition, ready func()) (container.WaitResponse, error)
	StopContainer(ctx context.Context, ref, signal string, timeout *int) error
	KillContainer(ctx context.Context, ref, signal string) error
	// DeleteContainer with volumes removes the container's anonymous
	// volumes too (rm -v).
	DeleteContainer(ctx context.Context, ref string, force, volumes bool) error
	ListContainers(ctx context.Context, all bool) ([]container.Summary, error)
	InspectContainer(ctx context.Context, ref string) (container.InspectResponse, error)
	LogsContainer(ctx context.Context, ref string, o container.LogsOptions, w io.Writer, ready func()) error
	AttachContainer(ctx context.Context, ref string, stdin io.Reader, stdout, stderr bool, conn io.Writer, ready func()) error
}

// ErrNotModified is what a backend returns for a request that changed
// nothing (stopping a stopped container): 304, as dockerd answers.
var ErrNotModified = errors.New("not modified")

func (rt router) containerRoute(w http.ResponseWriter, r *http.Request, p string) error {
	ctx := r.Context()
	post := r.Method == http.MethodPost
	switch p {
	case "/containers/create":
		return only(post, func() error { return rt.createContainer(w, r) })
	case "/containers/json":
		return only(r.Method == http.MethodGet, func() error { return rt.listContainers(w, r) })
	case "/containers/prune":
		return only(post, func() error { return rt.prune(w, r, false) })
	}
	rest, _ := strings.CutPrefix(p, "/containers/")
	id, op, _ := strings.Cut(rest, "/")
	if id == "" {
		return errPageNotFound
	}
	q := r.URL.Query()
	switch {
	case op == "" && r.Method == http.MethodDelete:
		if err := rt.b.DeleteContainer(ctx, id, boolValue(r, "force"), boolValue(r, "v")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	case op == "json" && r.Method == http.MethodGet:
		c, err := rt.b.InspectContainer(ctx, id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, c)
	case op == "start" && post:
		return noContent(w, rt.b.StartContainer(ctx, id))
	case op == "kill" && post:
		return noContent(w, rt.b.KillContainer(ctx, id, q.Get("signal")))
	case op == "stop" && post:
		var timeout *int
		if t := q.Get("t"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil {
				return fmt.Errorf("t=%q: %w", t, drivers.ErrInvalidArgument)
			}
			timeout = &n
		}
		return noContent(w, rt.b.StopContainer(ctx, id, q.Get("signal"), timeout))
	case op == "wait" && post:
		return rt.waitContainer(w, r, id)
	case op == "logs" && r.Method == http.MethodGet:
		o := container.LogsOptions{ShowStdout: boolValue(r, "stdout"), ShowStderr: boolValue(r, "stderr"),
			Timestamps: boolValue(r, "timestamps"), Follow: boolValue(r, "follow"), Tail: q.Get("tail"),
			Since: q.Get("since"), Until: q.Get("until")}
		fw := flushWriter{w}
		return rt.b.LogsContainer(ctx, id, o, fw, func() {
			w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
			w.WriteHeader(http.StatusOK)
			fw.Flush()
		})
	case op == "attach" && post:
		return rt.attachContainer(w, r, id)
	case op == "stats" && r.Method == http.MethodGet:
		return rt.containerStats(w, r, id)
	case op == "update" && post:
		return rt.updateContainer(w, r, id)
	case op == "changes" || op == "export" || op == "archive":
		return rt.filesystemRoute(w, r, id, op)
	}
	return rt.containerOps(w, r, id, op)
}

func noContent(w http.ResponseWriter, err error) error {
	switch {
	case errors.Is(err, ErrNotModified):
		w.WriteHeader(http.StatusNotModified)
		return nil
	case err != nil:
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (rt router) createContainer(w http.ResponseWriter, r *http.Request) error {
	var req container.CreateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
	}
	resp, err := rt.b.CreateContainer(r.Context(), r.URL.Query().Get("name"), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, resp)
}

// waitContainer sends the headers as soon as the waiter is registered:
// the CLI's wait call returns only then, and it starts the container
// after it.
func (rt router) waitContainer(w http.ResponseWriter, r *http.Request, id string) error {
	started := false
	resp, err := rt.b.WaitContainer(r.Context(), id, container.WaitCondition(r.URL.Query().Get("condition")), func() {
		started = true
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		flushWriter{w}.Flush()
	})
	if err != nil && !started {
		return err
	}
	if err != nil {
		resp.Error = &container.WaitExitError{Message: err.Error()}
	}
	return json.NewEncoder(w).Encode(resp)
}

// attachContainer hijacks the connection and answers 101 UPGRADED with
// the raw stream, as dockerd does.
func (rt router) attachContainer(w http.ResponseWriter, r *http.Request, id string) error {
	c, err := rt.b.InspectContainer(r.Context(), id)
	if err != nil {
		return err
	}
	keys, err := ParseDetachKeys(r.URL.Query().Get("detachKeys"))
	if err != nil {
		return err
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fmt.Errorf("attach: the connection cannot be hijacked: %w", drivers.ErrNotImplemented)
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer conn.Close()
	// The client's EOF does not end the attach (the CLI closes its write
	// side when its stdin ends); the container's output ending, or a
	// failed write to the client, does.
	var stdin io.Reader = buf
	ctx, detach := context.WithCancel(context.Background())
	defer detach()
	switch {
	case !boolValue(r, "stdin"):
		go func() { _, _ = io.Copy(io.Discard, buf) }()
		stdin = nil
	case c.Config != nil && c.Config.Tty:
		// As dockerd: the detach keys apply to a terminal's input; they
		// end the attach, not the container.
		stdin = &escapeReader{r: buf, keys: keys, onDetach: detach}
	}
	return rt.b.AttachContainer(ctx, id, stdin, boolValue(r, "stdout"), boolValue(r, "stderr"), conn, func() {
		_, _ = io.WriteString(conn, "HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	})
}

// flushWriter flushes after every write, so streamed logs reach the
// client as they come.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	f.Flush()
	return n, err
}

func (f flushWriter) Flush() {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}
