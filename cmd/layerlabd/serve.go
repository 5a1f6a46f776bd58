package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/daemon"
	"github.com/layerlab/layerlab/runtime/metrics"
)

// serve opens the daemon, listens on hosts (and on --metrics-addr) and
// serves until SIGINT or SIGTERM; then it stops accepting, lets requests
// in flight finish (a second signal cuts them), closes the daemon and
// removes the sockets. Every flag is checked before anything is opened.
func serve(ctx context.Context, cfg daemon.Config, hosts []string, remote remoteFlags) error {
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Log = log
	eps, err := endpoints(hosts, remote)
	if err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if remote.tls || remote.tlsVerify {
		if tlsCfg, err = serverTLS(remote); err != nil {
			return err
		}
	}
	if remote.metricsAddr != "" {
		if err := checkMetricsAddr(remote.metricsAddr, log); err != nil {
			return err
		}
		cfg.Metrics = metrics.New()
	}
	if ctx == nil {
		ctx = context.Background()
	}
	d, err := daemon.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	listeners, err := listen(eps, tlsCfg, log)
	if err != nil {
		return err
	}
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
		for _, e := range eps {
			if e.proto == "unix" {
				_ = os.Remove(e.addr)
			}
		}
	}()
	var ml net.Listener
	if cfg.Metrics != nil {
		if ml, err = net.Listen("tcp", remote.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		listeners = append(listeners, ml)
	}
	// The server's own complaints (refused TLS handshakes) go to the
	// daemon's log as warnings.
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	srv := &http.Server{Handler: logged(log, api.Handler(d)), ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog}
	servers := []*http.Server{srv}
	errc := make(chan error, len(listeners)+1)
	for _, l := range listeners {
		if l != ml {
			go func() { errc <- srv.Serve(l) }()
		}
	}
	if ml != nil {
		msrv := &http.Server{Handler: cfg.Metrics.Handler(), ReadHeaderTimeout: 30 * time.Second, ErrorLog: errLog}
		servers = append(servers, msrv)
		go func() { errc <- msrv.Serve(ml) }()
		log.Info("serving Prometheus metrics", "addr", "http://"+ml.Addr().String()+"/metrics")
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
	// follows in flight, which Shutdown waits for; then the event streams
	// (their die and destroy events sent) end.
	if err := d.StopAll(sctx); err != nil {
		log.Warn("stopping containers", "err", err)
	}
	d.EndStreams()
	// Whatever else still streams (an attach to a container that never
	// started) gets 30 s, so the drivers are always closed and unmounted.
	hctx, hcancel := context.WithTimeout(sctx, 30*time.Second)
	defer hcancel()
	for _, s := range servers {
		if err := s.Shutdown(hctx); err != nil {
			s.Close()
			log.Warn("requests cut short by a second signal or after 30 s", "err", err)
		}
	}
	return d.Close()
}

// checkMetricsAddr wants HOST:PORT; metrics are served on plain http, so
// an address beyond loopback gets a warning (dockerd allows it too).
func checkMetricsAddr(addr string, log *slog.Logger) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("--metrics-addr %q: %w: want HOST:PORT, e.g. 127.0.0.1:9323", addr, drivers.ErrInvalidArgument)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Warn("serving metrics beyond loopback over plain http: anyone who reaches it reads the containers' names and usage", "metrics-addr", addr)
	}
	return nil
}
