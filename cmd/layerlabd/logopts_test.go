package main

import (
	"errors"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func TestLogOptions(t *testing.T) {
	got, err := logOptions([]string{"max-size=10m", "tag={{.Name}}=x", "syslog-address="})
	if err != nil || len(got) != 3 || got["max-size"] != "10m" || got["tag"] != "{{.Name}}=x" || got["syslog-address"] != "" {
		t.Fatalf("logOptions: %v %v", got, err)
	}
	for _, bad := range []string{"max-size", "=1"} {
		if _, err := logOptions([]string{bad}); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("--log-opt %s: %v, want invalid argument", bad, err)
		}
	}
}
