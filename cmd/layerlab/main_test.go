package main

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRoot()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--data-root", t.TempDir()}, args...))
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
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Look drivers up by name: the registry grows as drivers land.
	byName := map[string]driverReport{}
	var names []string
	for _, r := range reports {
		byName[r.Name] = r
		names = append(names, r.Name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("drivers not sorted by name: %v", names)
	}
	for name, want := range map[string]drivers.Granularity{
		"overlay2": drivers.GranularityFile,
		"btrfs":    drivers.GranularityBlock,
	} {
		r, ok := byName[name]
		if !ok {
			t.Errorf("%s missing from %v", name, names)
		} else if r.Capabilities.Granularity != want {
			t.Errorf("%s report %+v, want granularity %s", name, r, want)
		}
	}
	if r := byName["btrfs"]; r.Capabilities.Strategy != drivers.RedirectOnWrite || !r.Capabilities.Quota {
		t.Errorf("btrfs report %+v, want redirect-on-write with quota", r)
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

// overlay and overlay2 describe their volatile option with its caveat.
func TestDriverInfoSaysWhatVolatileRisks(t *testing.T) {
	for _, name := range []string{"overlay", "overlay2"} {
		out, err := run(t, "driver", "info", name)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"volatile=true", "a crash or power loss can lose or tear what a container wrote", "Commit syncs the filesystem first"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s info lacks %q:\n%s", name, want, out)
			}
		}
	}
}

func TestDriverInfoUnknownNamesTheDrivers(t *testing.T) {
	_, err := run(t, "driver", "info", "nosuch")
	if err == nil || !strings.Contains(err.Error(), "overlay, overlay2, vfs") {
		t.Fatalf("got %v", err)
	}
}
