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

// TestEndToEndDockerPy drives layerlabd with docker-py, as its users'
// scripts drive dockerd: ping, version, images.load/get, containers.run
// with remove=True and its ContainerError, a detached container's logs,
// GraphDriver, stop, wait and remove, the NotFound errors, and a
// per-container storage driver (testdata/dockerpy_e2e.py).
func TestEndToEndDockerPy(t *testing.T) {
	if err := exec.Command(python3, "-c", "import docker").Run(); err != nil {
		feature.Skip(t, feature.DockerPy, "%s cannot import docker (make setup installs python3-docker): %v", python3, err)
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	script, err := filepath.Abs("testdata/dockerpy_e2e.py")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python3, script, e.sock, e.archive).CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("docker-py: %v\n%s\ndaemon log:\n%s", err, out, e.d.logText())
	}
	t.Logf("docker-py:\n%s", out)
	e.d.terminate(t)
	checkNoLeftovers(t)
}
