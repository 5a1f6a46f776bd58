package bench

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// Profile sets how much a run measures.
type Profile struct {
	Name        string
	Description string
	N           int // samples per point
	Warmup      int // untimed runs before the samples of each point
	Depths      []int
	CopyUpSizes []int64
	ColdSizes   []int64 // copy-up sizes also measured with caches dropped
	SmallFiles  []int   // files per small-file storm
	Parallel    int     // goroutines in the parallel storm
	WriteBytes  int64   // per sequential / random write sample
	AmpFileSize int64   // inherited file the write-amplification workload overwrites
	AmpWrites   int     // 4 KiB overwrites per write-amplification sample
	Densities   []int
	Unpack      UnpackSpec
	Contention  ContentionSpec
	Build       BuildSpec
	Workloads   []string // which workloads run, in name order
}

// UnpackSpec is the generated image the unpack workload applies.
type UnpackSpec struct {
	Layers        int
	FilesPerLayer int
	FileSize      int64
}

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
)

// WorkloadNames is every workload, for help texts.
func WorkloadNames() []string { return allWorkloads() }

// allWorkloads is every workload, in the order reports list them.
func allWorkloads() []string { return append(storageWorkloads(), "lifecycle", "build") }

// storageWorkloads are the workloads of the storage drivers alone, which
// the quick, standard and paper profiles run; lifecycle and build, which
// start daemons and containers, are the runtime profile's.
func storageWorkloads() []string {
	return []string{"snapshot-ops", "depth", "copy-up", "small-files", "write", "unpack", "density", "write-amp", "concurrency"}
}

// Profiles returns the built-in profiles by name.
func Profiles() map[string]Profile {
	quick := Profile{
		Name:        "quick",
		Description: "every storage workload, few samples: the `make bench` default, under 10 minutes on 2 cores",
		N:           10, Warmup: 2,
		Depths:      []int{1, 8, 32, 64, 128},
		CopyUpSizes: []int64{4 * kib, 64 * kib, mib, 16 * mib, 64 * mib},
		ColdSizes:   []int64{mib, 64 * mib},
		SmallFiles:  []int{1000}, Parallel: 4,
		WriteBytes:  16 * mib,
		AmpFileSize: 16 * mib, AmpWrites: 64,
		Densities: []int{1, 10, 100},
		Unpack:    UnpackSpec{Layers: 8, FilesPerLayer: 50, FileSize: 16 * kib},
		// About 10 s a target: enough for the ratios, not for the tails.
		Contention: ContentionSpec{Cheap: 4, Phase: 1500 * time.Millisecond, Rounds: 2, Size: 64 * mib},
		// Issue 13's context: 50 MiB in 64 files.
		Build:     BuildSpec{ContextBytes: 50 * mib, ContextFiles: 64, NoCache: 5},
		Workloads: storageWorkloads(),
	}
	standard := quick
	standard.Name, standard.Description = "standard", "more samples, larger files and 1000 live containers"
	standard.N, standard.Warmup = 30, 3
	standard.CopyUpSizes = []int64{4 * kib, 64 * kib, mib, 16 * mib, 64 * mib, 256 * mib}
	standard.ColdSizes = standard.CopyUpSizes
	standard.SmallFiles = []int{1000, 10000}
	standard.WriteBytes = 64 * mib
	standard.AmpFileSize, standard.AmpWrites = 64*mib, 256
	standard.Densities = []int{1, 10, 100, 1000}
	standard.Unpack = UnpackSpec{Layers: 16, FilesPerLayer: 200, FileSize: 32 * kib}
	// Issue 8's measurement used 20 s phases; BenchmarkContention does.
	standard.Contention = ContentionSpec{Cheap: 4, Phase: 5 * time.Second, Rounds: 3, Size: 256 * mib}

	paper := standard
	paper.Name = "paper"
	paper.Description = "the published workloads: create/start as in docker-create timings, containerd's benchsuite 16-layer prepare/write/commit, copy-up of large files"
	paper.N, paper.Warmup = 50, 5
	paper.Depths = []int{1, 16}
	paper.CopyUpSizes = []int64{mib, 64 * mib, 256 * mib}
	paper.ColdSizes = paper.CopyUpSizes
	paper.Unpack = UnpackSpec{Layers: 16, FilesPerLayer: 100, FileSize: 64 * kib}
	paper.Workloads = []string{"snapshot-ops", "depth", "copy-up", "unpack"}
	// Containers' lives through layerlabd, bare libcontainer, the docker
	// CLI and the dockerd peer: apart from quick, whose time budget it
	// would break (a daemon start, an image load and about 150 container
	// lives per target).
	rt := quick
	rt.Name = "runtime"
	rt.Description = "the lifecycle and build workloads: containers through layerlabd's API and the docker CLI next to bare libcontainer and dockerd; Dockerfile builds with and without cache"
	rt.N, rt.Warmup = 30, 3
	// Each no-cache build leaves its layers on the driver (see
	// BuildSpec): measured, 160 MiB a build for vfs on ext4 (a copy per
	// layer), so 11 take under half of the 4 GiB loop filesystem.
	rt.Build.NoCache = 10
	rt.Workloads = []string{"lifecycle", "build"}
	return map[string]Profile{"quick": quick, "standard": standard, "paper": paper, "runtime": rt}
}

// ProfileNamed returns the profile called name, or an error listing them.
func ProfileNamed(name string) (Profile, error) {
	ps := Profiles()
	if p, ok := ps[name]; ok {
		return p, nil
	}
	var names []string
	for n := range ps {
		names = append(names, n)
	}
	sort.Strings(names)
	return Profile{}, fmt.Errorf("profile %q: %w; profiles are %s", name, drivers.ErrInvalidArgument, strings.Join(names, ", "))
}
