package main

import "testing"

// TestEndToEndDockerPyOps drives exec, top, pause, rename, restart and a
// restart policy with docker-py (testdata/dockerpy_ops.py).
func TestEndToEndDockerPyOps(t *testing.T) {
	runDockerPy(t, "dockerpy_ops.py")
}

// TestEndToEndDockerPyHealth drives health checks with docker-py:
// containers.run(healthcheck=...), attrs['State']['Health'] through
// starting, healthy and unhealthy, and the health list filter
// (testdata/dockerpy_health.py).
func TestEndToEndDockerPyHealth(t *testing.T) {
	runDockerPy(t, "dockerpy_health.py")
}
