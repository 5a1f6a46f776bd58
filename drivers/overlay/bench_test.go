package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// bench is overlay2 on a fresh ext4 loop filesystem with a committed
// one-layer parent holding one file, and the two operations to compare.
type bench struct {
	ctx    context.Context
	d      drivers.Driver
	target string
	// floor state: an overlay made once, and a metadata file.
	floorData string
	meta      *os.File
	n         int
}

func newBench(b *testing.B) *bench {
	fs := loopfs.ForTest(b, "ext4", 0)
	ctx := context.Background()
	d, err := NewOverlay2(ctx, filepath.Join(fs.Dir, "home"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	ms, err := d.Prepare(ctx, "parent-active", "")
	if err != nil {
		b.Fatal(err)
	}
	bn := &bench{ctx: ctx, d: d, target: filepath.Join(fs.Dir, "target")}
	os.Mkdir(bn.target, 0o755)
	if err := mount.All(ms, bn.target); err != nil {
		b.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(bn.target, "file"), []byte("parent"), 0o644)
	mount.Unmount(bn.target)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Commit(ctx, "parent", "parent-active"); err != nil {
		b.Fatal(err)
	}
	if ms, err = d.Prepare(ctx, "floor", "parent"); err != nil {
		b.Fatal(err)
	}
	bn.floorData = strings.Join(ms[0].Options, ",")
	if bn.meta, err = os.OpenFile(filepath.Join(fs.Dir, "meta"), os.O_CREATE|os.O_WRONLY, 0o600); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bn.meta.Close() })
	return bn
}

// cycle is the full container-storage cycle on the one-layer parent:
// Prepare, mount, unmount, Remove, with the metadata committed durably at
// Prepare and at Remove.
// It returns the total and the time of each of the four phases.
func (bn *bench) cycle(b *testing.B) (time.Duration, [4]time.Duration) {
	var t [5]time.Time
	t[0] = time.Now()
	bn.n++
	key := fmt.Sprintf("c-%d", bn.n)
	ms, err := bn.d.Prepare(bn.ctx, key, "parent")
	if err != nil {
		b.Fatal(err)
	}
	t[1] = time.Now()
	if err := mount.All(ms, bn.target); err != nil {
		b.Fatal(err)
	}
	t[2] = time.Now()
	if err := mount.Unmount(bn.target); err != nil {
		b.Fatal(err)
	}
	t[3] = time.Now()
	if err := bn.d.Remove(bn.ctx, key); err != nil {
		b.Fatal(err)
	}
	t[4] = time.Now()
	var phases [4]time.Duration
	for i := range phases {
		phases[i] = t[i+1].Sub(t[i])
	}
	return t[4].Sub(t[0]), phases
}

// floor is what the cycle cannot go below: mount(2) and umount(2) of the
// same overlay (its directories made once, beforehand) plus one durable
// metadata commit, an fsync'd 4 KiB write on the same filesystem.
func (bn *bench) floor(b *testing.B) time.Duration {
	start := time.Now()
	if err := unix.Mount("overlay", bn.target, "overlay", 0, bn.floorData); err != nil {
		b.Fatal(err)
	}
	if err := unix.Unmount(bn.target, 0); err != nil {
		b.Fatal(err)
	}
	if _, err := bn.meta.WriteAt(make([]byte, 4096), 0); err != nil {
		b.Fatal(err)
	}
	if err := bn.meta.Sync(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func BenchmarkOverlay2Cycle(b *testing.B) {
	bn := newBench(b)
	var s drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total, _ := bn.cycle(b)
		s = append(s, total)
	}
	b.ReportMetric(float64(s.Median()), "median-ns/op")
}

func BenchmarkOverlay2Floor(b *testing.B) {
	bn := newBench(b)
	var s drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s = append(s, bn.floor(b))
	}
	b.ReportMetric(float64(s.Median()), "median-ns/op")
}

// BenchmarkOverlay2CycleVsFloor alternates the two, so both see the same
// machine load, and reports their medians and the ratio the target is set
// on (cycle within 1.5x of the floor), with the median of each phase of
// the cycle to show where the time goes.
func BenchmarkOverlay2CycleVsFloor(b *testing.B) {
	bn := newBench(b)
	var cycle, floor drivertest.Samples
	var phases [4]drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total, p := bn.cycle(b)
		cycle = append(cycle, total)
		for j := range p {
			phases[j] = append(phases[j], p[j])
		}
		floor = append(floor, bn.floor(b))
	}
	for j, name := range []string{"prepare", "mount", "umount", "remove"} {
		b.ReportMetric(float64(phases[j].Median()), name+"-median-ns")
	}
	b.ReportMetric(float64(cycle.Median()), "cycle-median-ns")
	b.ReportMetric(float64(floor.Median()), "floor-median-ns")
	b.ReportMetric(float64(cycle.Median())/float64(floor.Median()), "cycle/floor")
}
