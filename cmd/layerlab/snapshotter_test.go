package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/drivers/containerd"
	"github.com/layerlab/layerlab/drivers/feature"
)

// syncBuffer is a log buffer the server writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is a serveSnapshotter running in the test process.
type served struct {
	sn   snapshots.Snapshotter
	log  *syncBuffer
	stop func() error // cancels serve and returns what it returned
}

// serveInProcess runs serveSnapshotter for c until the test ends and
// returns containerd's own proxy client for it, as containerd's
// proxy_plugins entry makes one.
func serveInProcess(t testing.TB, c serveConfig) served {
	t.Helper()
	if c.stopTimeout == 0 {
		c.stopTimeout = 5 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &syncBuffer{}
	go func() { done <- serveSnapshotter(ctx, builtin.Registry(), c, logs) }()
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() { cancel(); serr = <-done })
		return serr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "serving driver") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("serve exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start in 10s:\n%s", logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+c.address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return served{sn: proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), c.driver), log: logs, stop: stop}
}

func needRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the drivers need root")
	}
}

// TestSnapshotterServeErrorsAndLabels drives a served vfs through
// containerd's proxy client: layerlab's errors arrive as containerd's
// errdefs classes, the labels containerd sends are honoured, -D logs each
// call with its duration, and the socket is 0660 and gone after stop.
func TestSnapshotterServeErrorsAndLabels(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	addr := filepath.Join(dir, "run", "vfs.sock")
	s := serveInProcess(t, serveConfig{driver: "vfs", root: filepath.Join(dir, "vfs"), address: addr, debug: true})
	ctx := context.Background()
	sn := s.sn

	fi, err := os.Stat(addr)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("socket %s: %v %v, want a socket with mode 0660", addr, fi.Mode(), err)
	}

	ref := map[string]string{containerd.LabelSnapshotRef: "sha256:layer1"}
	if _, err := sn.Prepare(ctx, "k1", "", snapshots.WithLabels(ref)); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "c1", "k1", snapshots.WithLabels(ref)); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "k2", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what  string
		err   error
		class func(error) bool
		words string
	}{
		{"Stat of a missing key", statErr(sn.Stat(ctx, "nosuch")), errdefs.IsNotFound, "nosuch"},
		{"Prepare of an existing key", prepErr(sn.Prepare(ctx, "k2", "c1")), errdefs.IsAlreadyExists, "k2"},
		{"Prepare on a missing parent", prepErr(sn.Prepare(ctx, "k3", "nosuch")), errdefs.IsNotFound, "nosuch"},
		{"Remove of a parent with a child", sn.Remove(ctx, "c1"), errdefs.IsFailedPrecondition, "c1"},
		{"a snapshot.ref the driver holds on the same parent", prepErr(sn.Prepare(ctx, "k4", "", snapshots.WithLabels(ref))), errdefs.IsAlreadyExists, "sha256:layer1"},
		{"a size label on vfs", prepErr(sn.Prepare(ctx, "k5", "", snapshots.WithLabels(map[string]string{containerd.LabelSize: "64M"}))), errdefs.IsInvalidArgument, "cannot limit"},
		{"a size label that is no size", prepErr(sn.Prepare(ctx, "k6", "", snapshots.WithLabels(map[string]string{containerd.LabelSize: "lots"}))), errdefs.IsInvalidArgument, "want a size"},
		{"a uid mapping label", prepErr(sn.Prepare(ctx, "k7", "", snapshots.WithLabels(map[string]string{containerd.LabelUIDMapping: "0:1000:65536"}))), errdefs.IsNotImplemented, "remap file ownership"},
	} {
		if !c.class(c.err) || !strings.Contains(c.err.Error(), c.words) {
			t.Errorf("%s: got %v, want its errdefs class and %q in the message", c.what, c.err, c.words)
		}
	}
	// The ref held on another parent is not the same layer: a new snapshot.
	if _, err := sn.Prepare(ctx, "k8", "c1", snapshots.WithLabels(ref)); err != nil {
		t.Errorf("Prepare with a ref held on another parent: %v", err)
	}
	// containerd finds the snapshot a ref names with this very filter.
	var found []string
	if err := sn.Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		found = append(found, i.Name)
		return nil
	}, `labels."containerd.io/snapshot.ref"==sha256:layer1,parent==""`); err != nil || len(found) != 1 || found[0] != "c1" {
		t.Errorf("Walk by ref: %v %v, want [c1]", found, err)
	}

	// A second server on a live socket is refused.
	err = serveSnapshotter(ctx, builtin.Registry(), serveConfig{driver: "vfs", root: filepath.Join(dir, "vfs2"), address: addr}, &bytes.Buffer{})
	if !errors.Is(err, drivers.ErrAlreadyExists) || !strings.Contains(err.Error(), "a server is listening there") {
		t.Errorf("second server on a live socket: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := os.Stat(addr); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v", err)
	}
	log := s.log.String()
	for _, want := range []string{`/containerd.services.snapshots.v1.Snapshots/Prepare key="k1" `, `/containerd.services.snapshots.v1.Snapshots/Stat key="nosuch" `, "/containerd.services.snapshots.v1.Snapshots/List ", "stopped; closing driver vfs"} {
		if !strings.Contains(log, want) {
			t.Errorf("-D log lacks %q:\n%s", want, log)
		}
	}
}

func statErr(_ snapshots.Info, err error) error { return err }
func prepErr(_ any, err error) error            { return err }

// A socket left by a server that died is replaced; a path that is not a
// socket is refused.
func TestSnapshotterServeStaleSocket(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	addr := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // as a kill -9 leaves it
	s := serveInProcess(t, serveConfig{driver: "vfs", root: filepath.Join(dir, "vfs"), address: addr})
	if _, err := s.sn.Prepare(context.Background(), "k", ""); err != nil {
		t.Errorf("Prepare on the server that replaced a stale socket: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Error(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err = serveSnapshotter(context.Background(), builtin.Registry(), serveConfig{driver: "vfs", root: filepath.Join(dir, "vfs"), address: file}, &bytes.Buffer{})
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("serve on a regular file: %v", err)
	}
}
