package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/daemon"
)

// serve opens the daemon, listens on hosts and serves until SIGINT or
// SIGTERM; then it stops accepting, lets requests in flight finish (a
// second signal cuts them), closes the daemon and removes the sockets.
func serve(ctx context.Context, cfg daemon.Config, hosts []string) error {
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Log = log
	paths, err := socketPaths(hosts)
	if err != nil {
		return err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	d, err := daemon.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
		for _, p := range paths {
			_ = os.Remove(p)
		}
	}()
	for _, p := range paths {
		l, err := listenUnix(p)
		if err != nil {
			return err
		}
		listeners = append(listeners, l)
	}
	srv := &http.Server{Handler: logged(log, api.Handler(d)), ReadHeaderTimeout: 30 * time.Second}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(l) }()
	}
	log.Info("layerlabd serving", "hosts", hosts, "data-root", cfg.DataRoot, "storage-driver", cfg.DefaultDriver)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
	}()
	defer cancel()
	// Containers first: their ends finish the waits, attaches and log
	// follows in flight, which Shutdown waits for.
	if err := d.StopAll(sctx); err != nil {
		log.Warn("stopping containers", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		log.Warn("requests cut short by a second signal", "err", err)
	}
	return d.Close()
}

// socketPaths turns -H values into socket paths; only unix:// for now.
func socketPaths(hosts []string) ([]string, error) {
	var out []string
	for _, h := range hosts {
		proto, addr, ok := strings.Cut(h, "://")
		switch {
		case !ok:
			return nil, fmt.Errorf("-H %q: %w: want unix:///path/to.sock", h, drivers.ErrInvalidArgument)
		case proto == "tcp":
			return nil, fmt.Errorf("-H %q: %w: tcp:// comes with TLS support in a later version; use unix:///path/to.sock", h, drivers.ErrNotImplemented)
		case proto != "unix" || !filepath.IsAbs(addr):
			return nil, fmt.Errorf("-H %q: %w: want unix:///absolute/path.sock", h, drivers.ErrInvalidArgument)
		}
		out = append(out, addr)
	}
	return out, nil
}

// listenUnix listens on path with mode 0660. A socket left at path by a
// daemon that died is removed: the data root's lock, already held, says
// no live daemon of this root serves it.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is served by another process: %w", path, drivers.ErrAlreadyExists)
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// logged logs each request at debug level.
func logged(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Debug("request", "method", r.Method, "path", r.URL.RequestURI())
		h.ServeHTTP(w, r)
	})
}
