package devicemapper

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/overlay"
)

// Absolute times in the test guest, under TCG emulation, mean little;
// the benchmarks alternate what they compare, so that both see the same
// machine, and report medians (the mean chases outliers) and ratios.

func timed(b *testing.B, fn func() error) time.Duration {
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// benchHome is a directory on a fresh ext4 loop filesystem, as the
// conformance suite's homes are.
func benchHome(b *testing.B) string {
	if p := Probe(os.TempDir()); !p.Available() {
		feature.Skip(b, feature.DeviceMapper, "%s: %s", Name, p.Reason)
	}
	return loopfs.ForTestWith(b, "ext4", fixtureSize, "discard").Dir
}

// withParent opens a driver of f in dir and commits a one-layer parent
// holding one file.
func withParent(b *testing.B, f drivers.Factory, dir string) drivers.Driver {
	ctx := context.Background()
	d, err := f.Open(ctx, filepath.Join(dir, f.Name), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	ms, err := d.Prepare(ctx, "parent-active", "")
	if err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(dir, f.Name+"-target")
	if err := os.Mkdir(target, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		b.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(target, "file"), []byte("parent"), 0o644)
	if uerr := mount.UnmountAll(target); err == nil {
		err = uerr
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Commit(ctx, "parent", "parent-active"); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkPrepareRemoveVsOverlay2 times Prepare and Remove of a child
// of a one-layer parent, no mount: devicemapper (create_snap, activate;
// deactivate, delete) against overlay2 (directories and a link), both
// homes on the same ext4 loop filesystem, both with their metadata
// committed durably at each step.
func BenchmarkPrepareRemoveVsOverlay2(b *testing.B) {
	dir := benchHome(b)
	ctx := context.Background()
	dm := withParent(b, Factory(), dir)
	ov := withParent(b, overlay.Overlay2Factory(), dir)
	cycle := func(d drivers.Driver, key string) func() error {
		return func() error {
			if _, err := d.Prepare(ctx, key, "parent"); err != nil {
				return err
			}
			return d.Remove(ctx, key)
		}
	}
	var dmTimes, ovTimes drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("c-%d", i)
		dmTimes = append(dmTimes, timed(b, cycle(dm, key)))
		ovTimes = append(ovTimes, timed(b, cycle(ov, key)))
	}
	b.ReportMetric(float64(dmTimes.Median()), "devicemapper-median-ns")
	b.ReportMetric(float64(ovTimes.Median()), "overlay2-median-ns")
	b.ReportMetric(float64(dmTimes.Median())/float64(ovTimes.Median()), "devicemapper/overlay2")
}

// BenchmarkControlCycle times the thin-device cycle under every snapshot
// (create_thin, activate: create+load+resume, deactivate, delete) driven
// by ioctls and by dmsetup, alternately, on one pool.
func BenchmarkControlCycle(b *testing.B) {
	d, err := New(context.Background(), filepath.Join(benchHome(b), "home"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	ioctl := *d.b.pool
	if ioctl.ctl.Kind() != controlIoctl {
		b.Fatalf("the default control is %s, want ioctl", ioctl.ctl.Kind())
	}
	dmsetup := ioctl
	dmsetup.ctl = dmsetupControl{}
	cycle := func(p *pool, id uint32) func() error {
		return func() error {
			if err := p.message("create_thin %d", id); err != nil {
				return err
			}
			name := p.thin(id)
			if _, err := p.ctl.Create(name, thinTarget(defaultBaseSize, p.dev, id), false); err != nil {
				return err
			}
			if _, err := p.ctl.Remove(name, false); err != nil {
				return err
			}
			return p.message("delete %d", id)
		}
	}
	const firstID = 1 << 20 // far above the snapshots'
	var ioctlTimes, dmsetupTimes drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ioctlTimes = append(ioctlTimes, timed(b, cycle(&ioctl, uint32(firstID+2*i))))
		dmsetupTimes = append(dmsetupTimes, timed(b, cycle(&dmsetup, uint32(firstID+2*i+1))))
	}
	b.ReportMetric(float64(ioctlTimes.Median()), "ioctl-median-ns")
	b.ReportMetric(float64(dmsetupTimes.Median()), "dmsetup-median-ns")
	b.ReportMetric(float64(dmsetupTimes.Median())/float64(ioctlTimes.Median()), "dmsetup/ioctl")
}
