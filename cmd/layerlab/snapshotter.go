package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/layerlab/layerlab/cmd/internal/socket"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/containerd"
)

// serveConfig is what `snapshotter serve` is asked to do.
type serveConfig struct {
	driver, root, address string
	opts                  []string
	debug                 bool
	stopTimeout           time.Duration
}

func newSnapshotterCmd(reg *drivers.Registry) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshotter", Short: "Serve a driver to containerd as a proxy snapshotter plugin"}
	var c serveConfig
	serve := &cobra.Command{
		Use:   "serve --driver NAME [--root DIR] [--address SOCKET] [--opt K=V]...",
		Short: "Serve containerd's snapshots gRPC API for one driver on a unix socket",
		Long: `Serve containerd's snapshots gRPC API for one driver on a unix socket, for a
[proxy_plugins] entry of type "snapshot" in containerd's config (docs/containerd.md).
One process serves one driver; run one per driver. SIGTERM or SIGINT stops it:
calls in flight finish (for up to --stop-timeout), the driver closes, the
socket is removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.driver == "" {
				return fmt.Errorf("--driver is required (one of the names `layerlab driver ls` prints): %w", drivers.ErrInvalidArgument)
			}
			if c.root == "" {
				dataRoot, _ := cmd.Flags().GetString("data-root")
				c.root = filepath.Join(dataRoot, c.driver)
			}
			if c.address == "" {
				c.address = "/run/layerlab/snapshotter-" + c.driver + ".sock"
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return serveSnapshotter(ctx, reg, c, cmd.ErrOrStderr())
		},
	}
	f := serve.Flags()
	f.StringVar(&c.driver, "driver", "", "the driver to serve (`layerlab driver ls`)")
	f.StringVar(&c.root, "root", "", "the driver's home (default DATA-ROOT/DRIVER)")
	f.StringVar(&c.address, "address", "", "unix socket to listen on (default /run/layerlab/snapshotter-DRIVER.sock)")
	f.StringArrayVar(&c.opts, "opt", nil, "driver option key=value (repeatable), as layerlabd's --storage-opt takes them")
	f.BoolVarP(&c.debug, "debug", "D", false, "log every call with its duration to stderr")
	f.DurationVar(&c.stopTimeout, "stop-timeout", 10*time.Second, "how long calls in flight may run on after SIGTERM before they are cut off")
	cmd.AddCommand(serve)
	return cmd
}

// serveSnapshotter opens the driver, serves it until ctx ends, then stops
// gracefully (bounded by stopTimeout), closes the driver and removes the
// socket.
func serveSnapshotter(ctx context.Context, reg *drivers.Registry, c serveConfig, stderr io.Writer) (err error) {
	logger := log.New(stderr, "", log.LstdFlags|log.Lmicroseconds)
	opts, err := drivers.ParseOptions(c.opts)
	if err != nil {
		return err
	}
	l, err := socket.Listen(c.address)
	if err != nil {
		return fmt.Errorf("--address %w", err)
	}
	// The socket goes after the driver is closed (below), not when gRPC
	// closes the listener.
	l.SetUnlinkOnClose(false)
	defer func() {
		if rerr := os.Remove(c.address); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
	}()
	d, err := reg.Open(ctx, c.driver, c.root, opts)
	if err != nil {
		l.Close()
		return err
	}
	defer func() { err = errors.Join(err, d.Close()) }()

	var sopts []grpc.ServerOption
	if c.debug {
		sopts = append(sopts, grpc.ChainUnaryInterceptor(logUnary(logger)), grpc.ChainStreamInterceptor(logStream(logger)))
	}
	srv := snapshotsServer(containerd.New(d), sopts...)
	logger.Printf("serving driver %s (home %s) on %s", c.driver, c.root, c.address)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving %s: %w", c.address, err)
	case <-ctx.Done():
	}
	logger.Printf("stopping: letting calls in flight finish (up to %s)", c.stopTimeout)
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(c.stopTimeout):
		logger.Printf("calls still running after %s: cutting them off", c.stopTimeout)
		srv.Stop()
		<-stopped
	}
	<-served
	logger.Printf("stopped; closing driver %s", c.driver)
	return nil
}

// snapshotsServer serves sn as containerd's snapshots service. Snapshot
// calls are small unary messages on a local socket, so the server skips
// gRPC's flow-control probing (a fixed window turns off its
// bandwidth-delay pings, one more write and wake-up per call) and keeps
// stream workers instead of a goroutine, grown anew, per call.
// BenchmarkPrepareProxy measures the hop.
func snapshotsServer(sn snapshots.Snapshotter, opts ...grpc.ServerOption) *grpc.Server {
	const window = 1 << 20
	opts = append(opts, grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))))
	srv := grpc.NewServer(opts...)
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	return srv
}

// keyed is a request that names a snapshot (every snapshots request but
// List and Cleanup).
type keyed interface{ GetKey() string }

func logUnary(logger *log.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		key := ""
		if k, ok := req.(keyed); ok {
			key = fmt.Sprintf(" key=%q", k.GetKey())
		}
		logCall(logger, info.FullMethod+key, time.Since(start), err)
		return resp, err
	}
}

func logStream(logger *log.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(logger, info.FullMethod, time.Since(start), err)
		return err
	}
}

func logCall(logger *log.Logger, call string, took time.Duration, err error) {
	if err != nil {
		logger.Printf("%s %s: %v", call, took, err)
		return
	}
	logger.Printf("%s %s ok", call, took)
}
