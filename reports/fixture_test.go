package reports

import (
	"math"
	"math/rand"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

// The fixtures below are rendering fixtures, not measurements: samples
// are drawn from log-normal distributions (math/rand, fixed seeds) with
// medians of the order layerlab measures, so every chart and table path
// runs on realistic shapes. No number here says anything about a driver.

// fixtureBuilder accumulates series with a deterministic random source.
type fixtureBuilder struct {
	rng *rand.Rand
	r   *result.Results
}

func newFixture(seed int64, host string) *fixtureBuilder {
	date := time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)
	r := &result.Results{
		Schema: result.Schema, Profile: "quick", Started: date, Finished: date.Add(17 * time.Minute),
		Machines: []result.Environment{{
			Hostname: host, Kernel: "6.1.0-28-amd64", CPU: "AMD EPYC 7B13", CPUs: 2, MemoryBytes: 4 << 30,
			GoVersion: "go1.26.8", LayerlabVersion: "v0.3.0", Commit: "e8e9625", Date: date, OverheadNs: 48,
		}},
		Targets: []result.Target{
			{ID: "overlay2/ext4", Driver: "overlay2", Backing: "ext4", Device: "/dev/loop3", Loop: true, DirectIO: true,
				MountOptions: "rw,relatime", DriverOptions: map[string]string{"overlay2.size": "10G", "mountopt": "nodev"},
				Strategy: "copy-on-write", Granularity: "file"},
			{ID: "vfs/ext4", Driver: "vfs", Backing: "ext4", Device: "/dev/loop3", Loop: true, DirectIO: true,
				MountOptions: "rw,relatime", Strategy: "full-copy", Granularity: "snapshot"},
			{ID: "btrfs/btrfs", Driver: "btrfs", Backing: "btrfs", Device: "/dev/loop4", Loop: true, DirectIO: true,
				MountOptions: "rw,relatime,space_cache=v2", Strategy: "redirect-on-write", Granularity: "block"},
			{ID: "aufs/xfs", Driver: "aufs", Backing: "xfs", Device: "/dev/loop5", Loop: true,
				MountOptions: "rw,relatime,<b>attr2</b>", Strategy: "copy-on-write", Granularity: "file",
				Notes: []string{"xino on tmpfs"}},
		},
		Notes: []string{"zfs skipped: module zfs not loaded (modprobe zfs)", "devicemapper runs in the VM suite only <script>"},
	}
	return &fixtureBuilder{rng: rand.New(rand.NewSource(seed)), r: r}
}

// lognormal draws n samples around median m with log-σ sigma.
func (f *fixtureBuilder) lognormal(n int, m, sigma float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = m * math.Exp(sigma*f.rng.NormFloat64())
	}
	return xs
}

func (f *fixtureBuilder) add(s result.Series) {
	if s.Cache == "" {
		s.Cache = "warm"
	}
	s.Summary = stats.Summarize(s.Samples, 1)
	f.r.Series = append(f.r.Series, s)
}

// fixture covers every workload kind the reports know, plus two they do
// not (an unknown ns workload and an unknown unit), with floors and cold
// cache series.
func fixture(seed int64, host string) *result.Results {
	f := newFixture(seed, host)
	drivers := []struct {
		id    string
		speed float64 // multiplies the latency medians
	}{{"overlay2/ext4", 1}, {"vfs/ext4", 6}, {"btrfs/btrfs", 1.8}, {"aufs/xfs", 1.4}}

	// snapshot-ops: one CDF and box plot per op.
	for _, op := range []struct {
		name string
		m    float64
	}{{"prepare", 900e3}, {"mount", 120e3}, {"commit", 2.5e6}, {"remove", 400e3}} {
		for _, d := range drivers {
			f.add(result.Series{Workload: "snapshot-ops", Op: op.name, Target: d.id, Unit: "ns",
				Samples: f.lognormal(30, op.m*d.speed, 0.25)})
		}
	}
	f.add(result.Series{Workload: "snapshot-ops", Op: "mount", Target: "floor:mount/ext4", Floor: true, Unit: "ns",
		Samples: f.lognormal(30, 60e3, 0.15)})
	f.add(result.Series{Workload: "snapshot-ops", Op: "prepare", Target: "overlay2/ext4", Cache: "cold", Unit: "ns",
		Samples: f.lognormal(30, 4.2e6, 0.4)})
	// A floor per target, as the harness measures the whole cycle.
	for _, d := range drivers[:2] {
		f.add(result.Series{Workload: "snapshot-ops", Op: "cycle", Target: d.id, Unit: "ns",
			Samples: f.lognormal(30, 3e6*d.speed, 0.2)})
		f.add(result.Series{Workload: "snapshot-ops", Op: "cycle", Target: "floor:mount+fsync/" + d.id, Floor: true, Unit: "ns",
			Samples: f.lognormal(30, 1e6*d.speed, 0.2)})
	}

	// depth: median vs depth with CI band.
	for _, depth := range []float64{1, 2, 4, 8, 16, 32, 64} {
		for i, d := range drivers[:3] {
			m := 150e3 * d.speed * (1 + float64(1-i%2)*depth/8)
			f.add(result.Series{Workload: "depth", Op: "lookup", Target: d.id, Param: "depth", Value: depth, Unit: "ns",
				Samples: f.lognormal(15, m, 0.2)})
		}
	}

	// copy-up: time vs file size, log-log, with the cp floor.
	for k := 0; k < 9; k++ {
		size := float64(int64(4096) << (2 * k)) // 4 KiB .. 256 MiB
		for _, d := range []struct {
			id    string
			bps   float64
			fixed float64
			floor bool
		}{{"overlay2/ext4", 900e6, 40e3, false}, {"aufs/xfs", 700e6, 70e3, false}, {"btrfs/btrfs", 20e9, 25e3, false}, {"floor:cp/ext4", 1000e6, 15e3, true}, {"floor:exec-true", 1e15, 900e3, true}} {
			f.add(result.Series{Workload: "copy-up", Op: "first-write", Target: d.id, Floor: d.floor, Param: "size", Value: size,
				Unit: "ns", Samples: f.lognormal(10, d.fixed+size/d.bps*1e9, 0.1)})
		}
	}

	// write-amp: ratio bars.
	for _, op := range []string{"append-4k", "overwrite-4k"} {
		for i, d := range drivers {
			f.add(result.Series{Workload: "write-amp", Op: op, Target: d.id, Unit: "ratio",
				Samples: f.lognormal(5, 1+float64(i)*0.6, 0.05)})
		}
	}

	// density: create/remove median vs containers, and space per container.
	for _, n := range []float64{1, 10, 50, 100, 250} {
		for _, d := range drivers[:3] {
			f.add(result.Series{Workload: "density", Op: "create", Target: d.id, Param: "containers", Value: n, Unit: "ns",
				Samples: f.lognormal(8, 2e6*d.speed*(1+n/200), 0.15)})
			f.add(result.Series{Workload: "density", Op: "remove", Target: d.id, Param: "containers", Value: n, Unit: "ns",
				Samples: f.lognormal(8, 1e6*d.speed*(1+n/400), 0.15)})
			f.add(result.Series{Workload: "density", Op: "space", Target: d.id, Param: "containers", Value: n, Unit: "bytes",
				Samples: f.lognormal(3, 48e3*d.speed*d.speed, 0.02)})
		}
	}

	// write: throughput bars, warm and cold.
	for _, op := range []string{"seq-write", "rand-write"} {
		for _, cache := range []string{"warm", "cold"} {
			for _, d := range drivers {
				f.add(result.Series{Workload: "write", Op: op, Target: d.id, Cache: cache, Unit: "bytes/s",
					Samples: f.lognormal(8, 800e6/d.speed*map[string]float64{"warm": 1, "cold": 0.6}[cache], 0.08)})
			}
		}
	}

	// Workloads this package has never heard of must still get a chart.
	for _, d := range drivers[:2] {
		f.add(result.Series{Workload: "xattr-storm", Op: "setxattr", Target: d.id, Unit: "ns",
			Samples: f.lognormal(20, 9e3*d.speed, 0.3)})
		f.add(result.Series{Workload: "inode-use", Op: "per-layer", Target: d.id, Unit: "inodes",
			Samples: f.lognormal(4, 1200*d.speed, 0.01)})
	}
	return f.r
}

// fixedSeries is a series with known samples for exact assertions: its
// median is 1.5 ms.
func fixedSeries() result.Series {
	s := result.Series{Workload: "snapshot-ops", Op: "fixed", Target: "overlay2/ext4", Cache: "warm", Unit: "ns",
		Samples: []float64{1.2e6, 1.4e6, 1.5e6, 1.6e6, 2.0e6}}
	s.Summary = stats.Summarize(s.Samples, 1)
	return s
}
