package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
)

// A small run of every workload against real drivers on loop filesystems:
// every series has its samples and summary, floors are there, and nothing
// is left mounted.
func TestRunSmallProfile(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the harness mounts: needs root")
	}
	p, _ := ProfileNamed("quick")
	p.N, p.Warmup = 3, 1
	p.Depths = []int{1, 4}
	p.CopyUpSizes, p.ColdSizes = []int64{4 * kib, mib}, []int64{mib}
	p.SmallFiles = []int{100}
	p.WriteBytes, p.AmpFileSize, p.AmpWrites = mib, mib, 8
	p.Densities = []int{1, 3}
	p.Unpack = UnpackSpec{Layers: 2, FilesPerLayer: 5, FileSize: 4 * kib}
	p.Contention = ContentionSpec{Cheap: 2, Phase: 200 * time.Millisecond, Rounds: 1, Size: mib}
	reg := drivers.NewRegistry(vfs.Factory(), overlay.Overlay2Factory())
	res, err := Run(context.Background(), Config{Registry: reg, Profile: p, Drivers: []string{"overlay2"}, Seed: 1, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 2 {
		t.Fatalf("targets %+v", res.Targets)
	}
	seen := map[string]bool{}
	for _, s := range res.Series {
		seen[s.Workload] = true
		if len(s.Samples) == 0 || s.Summary.N != len(s.Samples) {
			t.Errorf("series %s: %d samples, summary n %d", s.Key(), len(s.Samples), s.Summary.N)
		}
		if s.Unit == "ns" && s.Summary.P50 <= 0 {
			t.Errorf("series %s: median %v", s.Key(), s.Summary.P50)
		}
	}
	for _, w := range p.Workloads {
		if !seen[w] {
			t.Errorf("workload %s recorded nothing (notes: %v)", w, res.Notes)
		}
	}
	var floors []string
	for _, s := range res.Series {
		if s.Floor {
			floors = append(floors, s.Target)
		}
	}
	for _, want := range []string{"floor:mount+fsync/overlay2/ext4", "floor:cp/ext4", "floor:copy+fsync/ext4", "floor:bare/ext4"} {
		if !strings.Contains(strings.Join(floors, " "), want) {
			t.Errorf("floor %s missing from %v", want, floors)
		}
	}
	ops := map[string]bool{}
	for _, s := range res.Series {
		ops[s.Workload+" "+s.Op+" "+s.Target] = true
	}
	for _, want := range []string{
		"snapshot-ops remove overlay2/ext4", "snapshot-ops remove-view overlay2/ext4",
		"write rand-overwrite overlay2/ext4", "write rand-overwrite floor:bare/ext4", "write seq-write overlay2/xfs",
	} {
		if !ops[want] {
			t.Errorf("series %q missing", want)
		}
	}
	for _, want := range []string{"floor:mount+fsync/<target> is mount(2) and umount(2)", "floor:copy+fsync/<fs> copies it in-process", "rand-overwrite rewrites"} {
		if !strings.Contains(strings.Join(res.Notes, "\n"), want) {
			t.Errorf("no note says %q: %v", want, res.Notes)
		}
	}
	env := res.Machines[0]
	if env.Kernel == "" || env.CPUs == 0 || env.MemoryBytes == 0 || env.OverheadNs <= 0 {
		t.Errorf("environment %+v", env)
	}
	if env.OverheadNs > 1000 {
		t.Errorf("harness overhead %.0f ns per sample, want under 1 µs", env.OverheadNs)
	}
}

func TestUnknownProfileNamesTheProfiles(t *testing.T) {
	_, err := ProfileNamed("fast")
	if err == nil || !strings.Contains(err.Error(), "paper, quick, runtime, standard") {
		t.Fatalf("got %v", err)
	}
}
