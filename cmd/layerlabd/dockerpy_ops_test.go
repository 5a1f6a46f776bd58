package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestEndToEndDockerPyOps drives exec, top, pause, rename, restart and a
// restart policy with docker-py (testdata/dockerpy_ops.py).
func TestEndToEndDockerPyOps(t *testing.T) {
	if err := exec.Command(python3, "-c", "import docker").Run(); err != nil {
		feature.Skip(t, feature.DockerPy, "%s cannot import docker (make setup installs python3-docker): %v", python3, err)
	}
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	script, err := filepath.Abs("testdata/dockerpy_ops.py")
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
