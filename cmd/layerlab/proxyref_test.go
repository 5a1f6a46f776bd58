package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ctroverlay "github.com/containerd/containerd/v2/plugins/snapshots/overlay"

	"github.com/layerlab/layerlab/cmd/internal/socket"
)

// refEnv, set to ROOT:SOCKET, makes the test binary a reference proxy
// plugin: containerd's own overlayfs snapshotter served on SOCKET by the
// same server `snapshotter serve` uses, so BenchmarkPrepareProxy can tell
// what the proxy hop costs containerd's snapshotter from what it costs
// layerlab's.
const refEnv = "LAYERLAB_TEST_REF_PROXY"

// serveReference is the reference plugin's main; it returns at SIGTERM.
func serveReference(spec string) error {
	var root, addr string
	if _, err := fmt.Sscanf(spec, "%s %s", &root, &addr); err != nil {
		return fmt.Errorf("%s=%q: want ROOT SOCKET: %w", refEnv, spec, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	sn, err := ctroverlay.NewSnapshotter(root)
	if err != nil {
		return err
	}
	defer sn.Close()
	l, err := socket.Listen(addr)
	if err != nil {
		return err
	}
	srv := snapshotsServer(sn)
	go func() { <-ctx.Done(); srv.GracefulStop() }()
	return srv.Serve(l)
}

// refProc is a reference plugin process of the test binary.
type refProc struct {
	addr string
	cmd  *exec.Cmd
}

// startReference starts the reference plugin with its home under dir and
// stops it when the benchmark ends.
func startReference(b *testing.B, dir string) *refProc {
	r := &refProc{addr: filepath.Join(dir, "ref.sock")}
	r.cmd = exec.Command(os.Args[0])
	r.cmd.Env = append(os.Environ(), refEnv+"="+filepath.Join(dir, "ref")+" "+r.addr)
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("reference plugin: %v", err)
			}
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
			<-done
			b.Error("reference plugin did not stop on SIGTERM in 20s")
		}
	})
	waitUntil(b, 20*time.Second, "reference plugin listening", func() bool {
		fi, err := os.Stat(r.addr)
		return err == nil && fi.Mode().Type() == os.ModeSocket
	})
	return r
}
