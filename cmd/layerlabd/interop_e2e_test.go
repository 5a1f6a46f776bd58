package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestEndToEndInterop checks layerlabd's archives against other tools:
// skopeo reads what docker save wrote and copies it to an OCI layout,
// umoci reads and unpacks that layout, changes a file and repacks it, and
// the OCI archive skopeo makes of the result loads with docker load and
// runs with the change.
func TestEndToEndInterop(t *testing.T) {
	for _, bin := range []string{"skopeo", "umoci"} {
		if _, err := exec.LookPath(bin); err != nil {
			feature.Skip(t, feature.Skopeo, "%s: %v (make setup installs skopeo and umoci)", bin, err)
		}
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = e.tmp
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		t.Logf("%s %s:\n%s", name, strings.Join(args, " "), out)
		return string(out)
	}

	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	id := strings.TrimSpace(c.expect(0, "sha256:", "image", "inspect", "-f", "{{.Id}}", "busybox"))
	c.expect(0, "", "save", "-o", "saved.tar", "busybox")

	var info struct {
		Architecture, Os string
		Layers           []string
		RepoTags         []string
	}
	if err := json.Unmarshal([]byte(run("skopeo", "inspect", "docker-archive:saved.tar")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Architecture != "amd64" || info.Os != "linux" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect of docker save's archive: %+v", info)
	}
	cfg := run("skopeo", "inspect", "--config", "docker-archive:saved.tar")
	if !strings.Contains(cfg, `"architecture": "amd64"`) {
		t.Errorf("skopeo inspect --config: %s", cfg)
	}

	// skopeo: docker-archive -> OCI layout; umoci reads it.
	run("skopeo", "--insecure-policy", "copy", "docker-archive:saved.tar", "oci:layout:bb")
	if ls := run("umoci", "ls", "--layout", "layout"); strings.TrimSpace(ls) != "bb" {
		t.Errorf("umoci ls: %q, want the tag bb", ls)
	}
	run("umoci", "stat", "--image", "layout:bb")
	bundle := filepath.Join(e.tmp, "bundle")
	run("umoci", "unpack", "--image", "layout:bb", bundle)
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil {
		t.Fatalf("umoci unpack: %v", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "umoci-was-here"), []byte("repacked by umoci\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run("umoci", "repack", "--image", "layout:bb2", bundle)

	// The untouched and the repacked layout, as OCI archives skopeo makes,
	// load into layerlabd and run, the second with umoci's file.
	run("skopeo", "--insecure-policy", "copy", "oci:layout:bb", "oci-archive:bb.tar")
	run("skopeo", "--insecure-policy", "copy", "oci:layout:bb2", "oci-archive:bb2.tar")
	loadID := func(archive string) string {
		t.Helper()
		out := c.expect(0, "Loaded image ID: sha256:", "load", "-i", filepath.Join(e.tmp, archive))
		return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Loaded image ID: "))
	}
	// skopeo writes the config anew as an OCI config (another image ID);
	// the layer is busybox's.
	layers := func(img string) string {
		return c.expect(0, "sha256:", "image", "inspect", "-f", "{{.RootFS.Layers}}", img)
	}
	copied := loadID("bb.tar")
	if copied == id || layers(copied) != layers(id) {
		t.Errorf("skopeo's copy loads as %s with layers %s; busybox is %s with %s", copied, layers(copied), id, layers(id))
	}
	c.expect(0, "from skopeo", "run", "--rm", copied, "echo", "from", "skopeo")
	repacked := loadID("bb2.tar")
	c.expect(0, "repacked by umoci", "run", "--rm", repacked, "cat", "/umoci-was-here")
	c.expect(0, "2", "image", "inspect", "-f", "{{len .RootFS.Layers}}", repacked)
	e.d.terminate(t)
	checkNoLeftovers(t)
}
