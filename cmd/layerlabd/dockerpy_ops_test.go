package main

import "testing"

// TestEndToEndDockerPyOps drives exec, top, pause, rename, restart and a
// restart policy with docker-py (testdata/dockerpy_ops.py).
func TestEndToEndDockerPyOps(t *testing.T) {
	runDockerPy(t, "dockerpy_ops.py")
}
