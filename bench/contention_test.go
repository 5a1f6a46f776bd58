package bench

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/drivers/zfs"
)

// The concurrency workload records, for every target, both phases, the
// heavy operation the driver calls for, and both slowdowns.
func TestConcurrencyWorkload(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the harness mounts: needs root")
	}
	p, _ := ProfileNamed("quick")
	p.Workloads = []string{"concurrency"}
	p.Contention = ContentionSpec{Cheap: 2, Phase: 200 * time.Millisecond, Rounds: 2, Size: mib}
	reg := drivers.NewRegistry(vfs.Factory(), overlay.OverlayFactory())
	res, err := Run(context.Background(), Config{Registry: reg, Profile: p, Drivers: []string{"overlay", "vfs"}, Seed: 1, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 4 {
		t.Fatalf("targets %+v", res.Targets)
	}
	for _, tg := range res.Targets {
		heavy := map[string]string{"vfs": "heavy:prepare-child", "overlay": "heavy:commit-child"}[tg.Driver]
		want := map[string]int{ // op: samples at least
			"prepare+remove/alone": 2, "prepare+remove/loaded": 2, heavy: 2,
			"throughput/alone": 2, "throughput/loaded": 2, "p99-slowdown": 2, "throughput-slowdown": 2,
		}
		for _, s := range res.Series {
			if s.Target != tg.ID || s.Workload != "concurrency" {
				continue
			}
			n, ok := want[s.Op]
			if !ok {
				t.Errorf("%s: unexpected series %s", tg.ID, s.Key())
				continue
			}
			if len(s.Samples) < n || s.Summary.P50 <= 0 {
				t.Errorf("%s: %d samples, median %v; want at least %d, positive", s.Key(), len(s.Samples), s.Summary.P50, n)
			}
			delete(want, s.Op)
		}
		for op := range want {
			t.Errorf("%s: no series %s (notes: %v)", tg.ID, op, res.Notes)
		}
	}
	for _, n := range res.Notes {
		t.Log(n)
	}
	if len(res.Notes) != 4 {
		t.Errorf("want one summary note per target, got %q", res.Notes)
	}
}

// BenchmarkContention is issue 8's measurement: on one loop filesystem, 4
// goroutines do Prepare+Remove of parentless keys for a fixed time, alone
// and then while a fifth repeatedly does the driver's heavy operation
// (vfs: Prepare of a child of a committed 256 MiB parent, a full copy;
// classic overlay: Commit of a child of it, a hardlinked 256 MiB tree;
// zfs: Commit of a snapshot with 256 MiB written, which flushes them). It
// reports the cheap cycles' p50, p99 and throughput in both phases and
// the ratios the issue sets targets on: p99 loaded/alone <= 3,
// throughput loaded/alone >= 0.5.
//
// Each iteration is one round (a phase alone, then one loaded); rounds
// pool. LAYERLAB_CONTENTION_PHASE (default 20s) and
// LAYERLAB_CONTENTION_SIZE (default 256M) shrink it for a smoke run.
func BenchmarkContention(b *testing.B) {
	spec := ContentionSpec{Cheap: 4, Phase: 20 * time.Second, Rounds: 1, Size: 256 * mib}
	if v := os.Getenv("LAYERLAB_CONTENTION_PHASE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("LAYERLAB_CONTENTION_PHASE: %v", err)
		}
		spec.Phase = d
	}
	if v := os.Getenv("LAYERLAB_CONTENTION_SIZE"); v != "" {
		n, err := drivers.ParseSize("LAYERLAB_CONTENTION_SIZE", v)
		if err != nil {
			b.Fatal(err)
		}
		spec.Size = n
	}
	for _, c := range []struct {
		f       drivers.Factory
		backing string
	}{{vfs.Factory(), "ext4"}, {overlay.OverlayFactory(), "ext4"}, {zfs.Factory(), "zfs"}} {
		b.Run(c.f.Name+"/"+c.backing, func(b *testing.B) {
			var dir string
			if c.backing == "zfs" {
				dir = loopfs.ForTestZFS(b, 0).Dir
			} else {
				dir = loopfs.ForTest(b, c.backing, 4<<30).Dir
			}
			ctx := context.Background()
			home := filepath.Join(dir, "home")
			if p := c.f.Probe(home); !p.Available() {
				b.Skipf("%s: %s", c.f.Name, p.Reason)
			}
			d, err := c.f.Open(ctx, home, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { d.Close() })
			t := &target{d: d, work: filepath.Join(dir, "mnt"), info: result.Target{ID: c.f.Name + "/" + c.backing, Driver: c.f.Name}}
			if err := os.Mkdir(t.work, 0o755); err != nil {
				b.Fatal(err)
			}
			cn, err := newContention(ctx, t, spec)
			if err != nil {
				b.Fatal(err)
			}
			var alone, loaded []phaseResult
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, l, err := cn.round(ctx)
				if err != nil {
					b.Fatal(err)
				}
				alone, loaded = append(alone, a), append(loaded, l)
			}
			b.StopTimer()
			if err := cn.close(ctx); err != nil {
				b.Fatal(err)
			}
			s := cn.summarize(alone, loaded)
			b.Logf("%s: %s", t.info.ID, s)
			b.ReportMetric(0, "ns/op") // a round's length is set, not measured
			b.ReportMetric(s.p50Alone, "alone-p50-ns")
			b.ReportMetric(s.p99Alone, "alone-p99-ns")
			b.ReportMetric(s.rateAlone, "alone-ops/s")
			b.ReportMetric(s.p50Loaded, "loaded-p50-ns")
			b.ReportMetric(s.p99Loaded, "loaded-p99-ns")
			b.ReportMetric(s.rateLoaded, "loaded-ops/s")
			b.ReportMetric(s.p99Ratio, "p99-loaded/alone")
			b.ReportMetric(s.rateRatio, "ops-loaded/alone")
			b.ReportMetric(s.heavyMedian, "heavy-median-ns")
			b.ReportMetric(float64(len(s.loaded.heavy)), "heavy-ops")
		})
	}
}
