package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
)

func testRegistry() *drivers.Registry {
	return drivers.NewRegistry(vfs.Factory(), overlay.Overlay2Factory())
}

// tiny is a profile that measures snapshot-ops only, in seconds.
func tiny() Profile {
	p, _ := ProfileNamed("quick")
	p.N, p.Warmup = 2, 0
	p.Workloads = []string{"snapshot-ops", "write"}
	p.WriteBytes = mib
	return p
}

// Every refusal comes before anything is made: none of these needs root,
// and Run returns no results for them.
func TestValidateRefusesBeforeMaking(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := func() Config { return Config{Registry: testRegistry(), Profile: tiny(), Scratch: t.TempDir()} }
	for name, tc := range map[string]struct {
		change func(*Config)
		want   string
	}{
		"no samples":               {func(c *Config) { c.Profile.N = 0 }, "at least 1 sample"},
		"negative samples":         {func(c *Config) { c.Profile.N = -5 }, "at least 1 sample"},
		"negative warm-up":         {func(c *Config) { c.Profile.Warmup = -1 }, "no negative warm-up"},
		"unknown workload":         {func(c *Config) { c.Profile.Workloads = []string{"nosuch"} }, `workload "nosuch"`},
		"missing root":             {func(c *Config) { c.Root = "/nonexistent/layerlab" }, "--root /nonexistent/layerlab"},
		"relative root":            {func(c *Config) { c.Root = "here" }, "absolute path"},
		"root a file":              {func(c *Config) { c.Root = file }, "not a directory"},
		"unknown driver":           {func(c *Config) { c.Drivers = []string{"nosuch"} }, `"nosuch"`},
		"bad size":                 {func(c *Config) { c.Options = map[string]drivers.Options{"overlay2": {"size": "notasize"}} }, `size="notasize"`},
		"unknown option":           {func(c *Config) { c.Options = map[string]drivers.Options{"vfs": {"x": "1"}} }, "takes no options"},
		"unknown driver's options": {func(c *Config) { c.Options = map[string]drivers.Options{"nosuch": {"x": "1"}} }, `"nosuch"`},
		"options for a driver not run": {func(c *Config) {
			c.Drivers = []string{"vfs"}
			c.Options = map[string]drivers.Options{"overlay2": {"volatile": "true"}}
		}, "does not measure"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			tc.change(&cfg)
			res, err := Run(context.Background(), cfg)
			if res != nil || !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, %v; want ErrInvalidArgument saying %q", res, err, tc.want)
			}
			if entries, _ := os.ReadDir(cfg.Scratch); len(entries) != 0 {
				t.Errorf("scratch holds %d entries after a refusal", len(entries))
			}
		})
	}
}

// An option only the opened driver can refuse (a size limit on ext4,
// which has no project quota) fails the run after the loop filesystem is
// made: the error keeps its class, and nothing is left mounted. Before
// drivers.Opened this panicked in core.(*Driver).Close.
func TestOpenFailureTearsDown(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the harness mounts: needs root")
	}
	scratch := t.TempDir()
	cfg := Config{Registry: testRegistry(), Profile: tiny(), Drivers: []string{"overlay2"}, Scratch: scratch,
		Options: map[string]drivers.Options{"overlay2": {"size": "1G"}}}
	res, err := Run(context.Background(), cfg)
	if res != nil || !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("Run = %v, %v; want ErrInvalidArgument from overlay2's open", res, err)
	}
	assertNothingLeft(t, scratch)
}

// A cancelled run (what Ctrl-C does) stops, tears down and returns what
// it measured, marked partial, with an error wrapping the cause.
func TestInterruptedRunIsPartial(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the harness mounts: needs root")
	}
	scratch := t.TempDir()
	cause := errors.New("test interrupt")
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// Progress is written at the start of every step: cancel at the second,
	// so the first step (snapshot-ops on one target) is complete.
	progress := writerFunc(func(b []byte) {
		if strings.Contains(string(b), "] 2/") {
			cancel(cause)
		}
	})
	cfg := Config{Registry: testRegistry(), Profile: tiny(), Drivers: []string{"vfs"}, Scratch: scratch, Progress: progress}
	res, err := Run(ctx, cfg)
	if !errors.Is(err, cause) {
		t.Fatalf("Run error %v, want the cause", err)
	}
	if res == nil || !res.Partial {
		t.Fatalf("results %+v, want partial ones", res)
	}
	if len(res.Notes) == 0 || !strings.HasPrefix(res.Notes[0], "PARTIAL RESULTS: stopped (test interrupt) before") {
		t.Errorf("first note %q, want where it stopped", res.Notes)
	}
	var cycle bool
	for _, s := range res.Series {
		if s.Workload == "write" {
			t.Errorf("series %s of a step that never ran", s.Key())
		}
		cycle = cycle || s.Op == "cycle" && len(s.Samples) == 2
	}
	if !cycle {
		t.Errorf("the first step's cycle series is missing: %d series", len(res.Series))
	}
	if len(res.Targets) != 2 || res.Finished.IsZero() {
		t.Errorf("targets %v, finished %v", res.Targets, res.Finished)
	}
	assertNothingLeft(t, scratch)
}

type writerFunc func([]byte)

func (w writerFunc) Write(b []byte) (int, error) { w(b); return len(b), nil }

// assertNothingLeft fails when a mount, or a loop device on an image,
// under dir is left.
func assertNothingLeft(t *testing.T, dir string) {
	t.Helper()
	if points, err := mount.Under(dir); err != nil || len(points) > 0 {
		t.Errorf("mounts left under %s: %v %v", dir, points, err)
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.HasPrefix(string(b), dir) {
			t.Errorf("loop device %s left on %s", filepath.Dir(filepath.Dir(f)), strings.TrimSpace(string(b)))
		}
	}
}
