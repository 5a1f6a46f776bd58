package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/btrfs"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/daemon"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// newDaemon opens a daemon with vfs (which mounts nothing) in a fresh
// data root.
func newDaemon(t *testing.T, root string) (*daemon.Daemon, error) {
	t.Helper()
	return daemon.New(context.Background(), daemon.Config{
		Registry: drivers.NewRegistry(vfs.Factory(), btrfs.Factory()),
		DataRoot: root, ExecRoot: filepath.Join(root, "exec"), DefaultDriver: "vfs", Version: "test",
	})
}

func TestOneDaemonPerDataRoot(t *testing.T) {
	root := t.TempDir()
	d, err := newDaemon(t, root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newDaemon(t, root)
	if !errors.Is(err, daemon.ErrLocked) || !strings.Contains(err.Error(), root) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second daemon: %v, want a refusal naming %s and pid %d", err, root, os.Getpid())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = newDaemon(t, root)
	if err != nil {
		t.Fatalf("after Close the root is free: %v", err)
	}
	d.Close()
}

// TestDriverThatCannotOpen: btrfs on a home that is not btrfs says why and
// which option moves its home.
func TestDriverThatCannotOpen(t *testing.T) {
	root := t.TempDir()
	_, err := daemon.New(context.Background(), daemon.Config{
		Registry: drivers.NewRegistry(vfs.Factory(), btrfs.Factory()),
		DataRoot: root, ExecRoot: filepath.Join(root, "exec"), DefaultDriver: "vfs", Drivers: []string{"btrfs"},
	})
	if err == nil || !strings.Contains(err.Error(), "btrfs.home=") {
		t.Fatalf("btrfs on a non-btrfs home: %v, want the reason and --storage-opt btrfs.home", err)
	}
	// The failed start released the root.
	d, err := newDaemon(t, root)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
}

func call(t *testing.T, srv *httptest.Server, method, path string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// TestImageRoutes goes through the API handler into a real daemon: load,
// list with filters, tag, delete shapes, save errors before any byte.
func TestImageRoutes(t *testing.T) {
	_, srv, archive := servedDaemon(t)

	resp, body := call(t, srv, "POST", "/v1.41/images/load?quiet=1", archive)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `{"stream":"Loaded image: busybox:latest\n"}`) {
		t.Fatalf("load: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "POST", "/images/busybox:two/tag?repo=example.com/x&tag=1", nil)
	if resp.StatusCode != 201 {
		t.Fatalf("tag: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", `/v1.41/images/json?filters={"reference":{"example.com/*":true}}`, nil)
	var list []struct{ RepoTags []string }
	if err := json.Unmarshal(body, &list); resp.StatusCode != 200 || err != nil || len(list) != 1 || list[0].RepoTags[0] != "example.com/x:1" {
		t.Fatalf("list by reference: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/v1.41/images/example.com/x:1/json", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"example.com/x:1"`) {
		t.Fatalf("inspect a name with a slash: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "DELETE", "/v1.41/images/busybox:two", nil)
	if resp.StatusCode != 200 || string(body) != "[{\"Untagged\":\"busybox:two\"}]\n" {
		t.Fatalf("delete (untag): %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "DELETE", "/v1.41/images/example.com/x:1", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `{"Untagged":"example.com/x:1"},{"Deleted":"sha256:`) {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/v1.41/images/get?names=busybox&names=nosuch", nil)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), "No such image: nosuch") {
		t.Fatalf("save of a missing image: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/v1.41/images/busybox/get", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" || len(body) < 1<<20 {
		t.Fatalf("save: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = call(t, srv, "PUT", "/v1.41/info", nil)
	if resp.StatusCode != 405 || !strings.Contains(string(body), `"message"`) {
		t.Fatalf("wrong method: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/v1.23/version", nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "too old") {
		t.Fatalf("old version: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, srv, "GET", "/info", nil)
	var info struct {
		Driver       string
		Images       int
		DriverStatus [][2]string
	}
	if err := json.Unmarshal(body, &info); err != nil || info.Driver != "vfs" || info.Images != 1 || info.DriverStatus[0] != [2]string{"Strategy", "full-copy"} {
		t.Fatalf("info: %d %s", resp.StatusCode, body)
	}
}

// servedDaemon opens a vfs daemon in a fresh data root, serves its API on
// a test server and returns them with the busybox archive's bytes; all
// close when the test ends.
func servedDaemon(t *testing.T) (*daemon.Daemon, *httptest.Server, []byte) {
	t.Helper()
	archive, err := os.ReadFile(imagetest.ArchiveForTest(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	srv := httptest.NewServer(api.Handler(d))
	t.Cleanup(srv.Close)
	return d, srv, archive
}
