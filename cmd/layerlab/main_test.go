package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--root", t.TempDir()}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func TestDriverLs(t *testing.T) {
	out, err := run(t, "driver", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vfs", "overlay", "overlay2"} {
		var line string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 0 && f[0] == name {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("%s missing from:\n%s", name, out)
		}
		if os.Geteuid() == 0 && !strings.HasSuffix(strings.TrimSpace(line), "yes") {
			t.Errorf("%s not available as root: %s", name, line)
		}
	}
	if !strings.Contains(out, "copy-on-write") || !strings.Contains(out, "full-copy") {
		t.Errorf("strategies missing:\n%s", out)
	}
}

func TestDriverLsJSON(t *testing.T) {
	out, err := run(t, "driver", "ls", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var reports []driverReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil || len(reports) != 3 {
		t.Fatalf("%v: %s", err, out)
	}
	if reports[1].Name != "overlay2" || reports[1].Capabilities.Granularity != "file" {
		t.Errorf("overlay2 report %+v", reports[1])
	}
}

func TestDriverInfo(t *testing.T) {
	out, err := run(t, "driver", "info", "overlay2")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"copy-on-write", "probed:", "kernel", "overlay in /proc/filesystems"} {
		if !strings.Contains(out, want) {
			t.Errorf("info lacks %q:\n%s", want, out)
		}
	}
}

func TestDriverInfoUnknownNamesTheDrivers(t *testing.T) {
	_, err := run(t, "driver", "info", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "overlay, overlay2, vfs") {
		t.Fatalf("got %v", err)
	}
}
