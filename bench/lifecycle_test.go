package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/runtime/executor"
)

// TestMain is also the bare-run containers' init: libcontainer
// re-executes this test binary as "<binary> init".
func TestMain(m *testing.M) {
	executor.Init()
	os.Exit(m.Run())
}

// hostState is what a run must leave as it found it: mount points, loop
// devices' backing files and the cgroups the lifecycle's daemons and
// containers use.
// Only what is the run's own counts (below its scratch directory, its
// cgroup parents): other test binaries of `go test ./...` mount and run
// containers at the same time.
func hostState(t *testing.T, scratch string) []string {
	t.Helper()
	var out []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], scratch) {
			out = append(out, "mount "+f[4])
		}
	}
	loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, l := range loops {
		b, _ := os.ReadFile(l)
		if f := strings.TrimSpace(string(b)); strings.HasPrefix(f, scratch) {
			out = append(out, "loop "+f)
		}
	}
	for _, pat := range []string{"/sys/fs/cgroup/*" + bareCgroupParent + "*", "/sys/fs/cgroup/*/dockerd*"} {
		cgs, _ := filepath.Glob(pat)
		for _, cg := range cgs {
			out = append(out, "cgroup "+cg)
		}
	}
	slices.Sort(out)
	return out
}

// TestLifecycle runs the lifecycle workload once with tiny N on overlay2
// (ext4 and xfs) against a layerlabd built for the test: every op records
// samples, and nothing is left mounted, attached or in a cgroup.
func TestLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the lifecycle workload mounts and runs containers: needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		feature.Skip(t, feature.Busybox, "/bin/busybox: %v (make setup installs busybox-static)", err)
	}
	bin := t.TempDir()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", filepath.Join(bin, "layerlabd"), "../cmd/layerlabd").CombinedOutput(); err != nil {
		t.Fatalf("go build layerlabd: %v\n%s", err, out)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	scratch := t.TempDir()
	before := hostState(t, scratch)

	p, err := ProfileNamed("runtime")
	if err != nil {
		t.Fatal(err)
	}
	p.N, p.Warmup = 2, 1
	p.Workloads = []string{"lifecycle"} // TestBuildWorkload runs build
	reg := drivers.NewRegistry(vfs.Factory(), overlay.Overlay2Factory())
	res, err := Run(context.Background(), Config{Registry: reg, Profile: p, Drivers: []string{"overlay2"}, Scratch: scratch, Seed: 1, Version: "test"})
	if err != nil {
		t.Fatalf("%v\nnotes: %v", err, res.Notes)
	}
	t.Logf("notes: %v", res.Notes)

	ops := []string{"bare-run", "bare-exec", "api-run", "api-create", "api-start", "api-wait", "api-delete",
		"api-run-nonet", "api-run-bridge", "api-create-nonet", "api-create-bridge", "api-start-nonet", "api-start-bridge",
		"api-wait-nonet", "api-wait-bridge", "api-delete-nonet", "api-delete-bridge",
		"cli-run", "rss-idle", "rss-10-running", "rss-per-container", "start-50", "bare-run-cpu", "api-run-cpu"}
	if _, err := exec.LookPath("dockerd"); err == nil {
		ops = append(ops, "dockerd-cli-run", "dockerd-nonet-cli-run")
	} else if !strings.Contains(strings.Join(res.Notes, "\n"), "dockerd-cli-run (the dockerd peer) not measured") {
		t.Errorf("no dockerd here, and no note says the peer is missing: %v", res.Notes)
	}
	got := map[string]int{}
	for _, s := range res.Series {
		if s.Workload != "lifecycle" {
			continue
		}
		got[s.Op+" "+s.Target] = len(s.Samples)
		if s.Summary.P50 <= 0 && s.Op != "rss-per-container" && !strings.HasSuffix(s.Op, "-cpu") {
			t.Errorf("series %s: median %v", s.Key(), s.Summary.P50)
		}
	}
	for _, target := range []string{"overlay2/ext4", "overlay2/xfs"} {
		for _, op := range ops {
			want := p.N
			switch op {
			case "rss-idle", "rss-10-running":
				want = 3
			case "rss-per-container", "bare-run-cpu", "api-run-cpu":
				want = 1
			case "start-50":
				want = 50
			}
			if n := got[op+" "+target]; n != want {
				t.Errorf("%s on %s: %d samples, want %d", op, target, n, want)
			}
		}
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "api-run goes through layerlabd's Docker API") {
		t.Errorf("no note says what the lifecycle ops include: %v", res.Notes)
	}
	if after := hostState(t, scratch); !slices.Equal(before, after) {
		t.Errorf("left behind or removed:\nbefore %v\nafter  %v", before, after)
	}
}
