package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
)

// python3 is Debian's: the python3 first on PATH may not see Debian's
// packages (python3-docker).
const python3 = "/usr/bin/python3"

// runDockerPy runs testdata/script with docker-py against a layerlabd of
// its own (socket and busybox archive as arguments); the script ends its
// output with OK. Then the daemon stops and leaves nothing behind.
func runDockerPy(t *testing.T, script string) {
	t.Helper()
	if err := exec.Command(python3, "-c", "import docker").Run(); err != nil {
		feature.Skip(t, feature.DockerPy, "%s cannot import docker (make setup installs python3-docker): %v", python3, err)
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	path, err := filepath.Abs(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	// -B: importing dockerpy_common writes no __pycache__ into testdata.
	out, err := exec.Command(python3, "-B", path, e.sock, e.archive).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("docker-py %s: %v\n%s\ndaemon log:\n%s", script, err, out, e.d.logText())
	}
	t.Logf("docker-py %s:\n%s", script, out)
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// TestEndToEndDockerPy drives layerlabd with docker-py, as its users'
// scripts drive dockerd: ping, version, images.load/get, containers.run
// with remove=True and its ContainerError, a detached container's logs,
// GraphDriver, stop, wait and remove, the NotFound errors, and a
// per-container storage driver (testdata/dockerpy_e2e.py).
func TestEndToEndDockerPy(t *testing.T) {
	runDockerPy(t, "dockerpy_e2e.py")
}
