package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// OpsBackend is the daemon's side of the routes that act on a running
// container: exec, top, pause and unpause, rename, resize and restart.
type OpsBackend interface {
	CreateExec(ctx context.Context, ref string, o container.ExecOptions) (string, error)
	// StartExec runs the exec. Detached it returns once the process
	// started; otherwise it calls ready just before, then streams to
	// conn until the process has ended.
	StartExec(ctx context.Context, id string, detach bool, stdin io.Reader, conn io.Writer, ready func()) error
	InspectExec(ctx context.Context, id string) (ExecInspect, error)
	ResizeExec(ctx context.Context, id string, width, height uint16) error
	TopContainer(ctx context.Context, ref, psArgs string) (container.TopResponse, error)
	PauseContainer(ctx context.Context, ref string) error
	UnpauseContainer(ctx context.Context, ref string) error
	RenameContainer(ctx context.Context, ref, name string) error
	ResizeContainer(ctx context.Context, ref string, width, height uint16) error
	RestartContainer(ctx context.Context, ref string, timeout *int) error
}

// ExecInspect is GET /exec/{id}/json's answer in dockerd's shape (its
// api/types/backend package would pull terminal libraries into the
// build for two structs).
type ExecInspect struct {
	ID            string
	Running       bool
	ExitCode      *int // null until the process has ended
	ProcessConfig *ExecProcessConfig
	OpenStdin     bool
	OpenStderr    bool
	OpenStdout    bool
	CanRemove     bool
	ContainerID   string
	DetachKeys    []byte
	Pid           int
}

// ExecProcessConfig is the exec's command as ExecInspect shows it.
type ExecProcessConfig struct {
	Tty        bool     `json:"tty"`
	Entrypoint string   `json:"entrypoint"`
	Arguments  []string `json:"arguments"`
	Privileged *bool    `json:"privileged,omitempty"`
	User       string   `json:"user,omitempty"`
}

// containerOps routes /containers/{id}/{op} for OpsBackend's operations.
func (rt router) containerOps(w http.ResponseWriter, r *http.Request, id, op string) error {
	ctx := r.Context()
	q := r.URL.Query()
	post := r.Method == http.MethodPost
	switch {
	case op == "exec" && post:
		var o container.ExecOptions
		if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
			return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
		}
		execID, err := rt.b.CreateExec(ctx, id, o)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: execID})
	case op == "top" && r.Method == http.MethodGet:
		top, err := rt.b.TopContainer(ctx, id, q.Get("ps_args"))
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, top)
	case op == "pause" && post:
		return noContent(w, rt.b.PauseContainer(ctx, id))
	case op == "unpause" && post:
		return noContent(w, rt.b.UnpauseContainer(ctx, id))
	case op == "rename" && post:
		return noContent(w, rt.b.RenameContainer(ctx, id, q.Get("name")))
	case op == "resize" && post:
		width, height, err := termSize(r)
		if err != nil {
			return err
		}
		return okEmpty(w, rt.b.ResizeContainer(ctx, id, width, height))
	case op == "restart" && post:
		var timeout *int
		if t := q.Get("t"); t != "" {
			n, err := strconv.Atoi(t)
			if err != nil {
				return fmt.Errorf("t=%q: %w", t, drivers.ErrInvalidArgument)
			}
			timeout = &n
		}
		return noContent(w, rt.b.RestartContainer(ctx, id, timeout))
	}
	return errPageNotFound
}

// execRoute routes /exec/{id}/{start,json,resize}.
func (rt router) execRoute(w http.ResponseWriter, r *http.Request, p string) error {
	rest, _ := strings.CutPrefix(p, "/exec/")
	id, op, _ := strings.Cut(rest, "/")
	if id == "" {
		return errPageNotFound
	}
	switch {
	case op == "json" && r.Method == http.MethodGet:
		insp, err := rt.b.InspectExec(r.Context(), id)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, insp)
	case op == "start" && r.Method == http.MethodPost:
		return rt.startExec(w, r, id)
	case op == "resize" && r.Method == http.MethodPost:
		width, height, err := termSize(r)
		if err != nil {
			return err
		}
		return okEmpty(w, rt.b.ResizeExec(r.Context(), id, width, height))
	}
	return errPageNotFound
}

// startExec starts an exec. Attached, it hijacks the connection and
// answers 101 UPGRADED (200 OK to a client that asked for no upgrade)
// with the raw stream, as dockerd does.
func (rt router) startExec(w http.ResponseWriter, r *http.Request, id string) error {
	var o container.ExecStartOptions
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("invalid JSON: %w: %w", err, drivers.ErrInvalidArgument)
	}
	insp, err := rt.b.InspectExec(r.Context(), id)
	if err != nil {
		return err
	}
	if o.Detach {
		return okEmpty(w, rt.b.StartExec(r.Context(), id, true, nil, nil, nil))
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fmt.Errorf("exec: the connection cannot be hijacked: %w", drivers.ErrNotImplemented)
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	defer conn.Close()
	status := "200 OK"
	if r.Header.Get("Upgrade") != "" {
		status = "101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp"
	}
	answered := false
	ctx, detach := context.WithCancel(context.Background())
	defer detach()
	var stdin io.Reader = buf
	if insp.OpenStdin && insp.ProcessConfig != nil && insp.ProcessConfig.Tty && len(insp.DetachKeys) > 0 {
		// As attach: the detach keys on a terminal's input end the
		// stream, not the process.
		stdin = &escapeReader{r: buf, keys: insp.DetachKeys, onDetach: detach}
	}
	err = rt.b.StartExec(ctx, id, false, stdin, conn, func() {
		answered = true
		_, _ = io.WriteString(conn, "HTTP/1.1 "+status+"\r\nContent-Type: application/vnd.docker.raw-stream\r\n\r\n")
	})
	if err != nil && !answered {
		writeRawError(conn, buf, err)
	}
	return nil
}

// writeRawError answers with err, as writeError does, on a connection
// already taken from net/http.
func writeRawError(conn net.Conn, buf *bufio.ReadWriter, err error) {
	body, _ := json.Marshal(map[string]string{"message": err.Error()})
	code := Status(err)
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\nApi-Version: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		code, http.StatusText(code), MaxVersion, len(body)+1, body)
	_ = buf.Flush()
	_ = conn.Close()
}

// termSize reads resize's h and w.
func termSize(r *http.Request) (width, height uint16, err error) {
	q := r.URL.Query()
	h, herr := strconv.ParseUint(q.Get("h"), 10, 16)
	wd, werr := strconv.ParseUint(q.Get("w"), 10, 16)
	if herr != nil || werr != nil {
		return 0, 0, fmt.Errorf("invalid terminal size h=%q w=%q: %w", q.Get("h"), q.Get("w"), drivers.ErrInvalidArgument)
	}
	return uint16(wd), uint16(h), nil
}

// okEmpty answers 200 with no body, as dockerd's resize and detached
// exec start do.
func okEmpty(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
