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

// refEnv (the socket) and refRootEnv (the home) make the test binary a
// reference proxy plugin: containerd's own overlayfs snapshotter served
// on the socket by the same server `snapshotter serve` uses, so
// BenchmarkPrepareProxy can tell what the proxy hop costs containerd's
// snapshotter from what it costs layerlab's.
const (
	refEnv     = "LAYERLAB_TEST_REF_PROXY"
	refRootEnv = "LAYERLAB_TEST_REF_ROOT"
)

// serveReference is the reference plugin's main; it returns at SIGTERM.
func serveReference(addr string) error {
	root := os.Getenv(refRootEnv)
	if root == "" {
		return fmt.Errorf("%s is not set", refRootEnv)
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
	r.cmd.Env = append(os.Environ(), refEnv+"="+r.addr, refRootEnv+"="+filepath.Join(dir, "ref"))
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	// Killed with the benchmark if that dies first (a -timeout panic).
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	b.Cleanup(func() {
		if r.cmd == nil {
			return // exited before it served
		}
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		if fi, err := os.Stat(r.addr); err == nil && fi.Mode().Type() == os.ModeSocket {
			return r
		}
		select {
		case err := <-done:
			r.cmd = nil
			b.Fatalf("the reference plugin exited before it served: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.Fatal("the reference plugin is not listening after 20s")
		}
	}
}
