package layer_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/btrfs"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/overlay"
)

// BenchmarkDiffNativeVsGeneric diffs a snapshot that changed 100 files of
// a 10,000-file parent two ways, alternating: DiffSnapshot, which reads
// overlay2's upper directory or asks btrfs send, and Diff of mounted views
// of the snapshot and its parent (the walk every driver can use; the views
// are mounted once, outside the timing). It reports both medians and
// generic/native (issue 9's target: at least 3).
//
//	go test ./drivers/layer/ -run '^$' -bench DiffNativeVsGeneric -benchtime 20x
func BenchmarkDiffNativeVsGeneric(b *testing.B) {
	for _, c := range []struct {
		name, fstype string
		open         func(context.Context, string, drivers.Options) (*core.Driver, error)
	}{
		{"overlay2", "ext4", overlay.NewOverlay2},
		{"btrfs", "btrfs", btrfs.New},
	} {
		b.Run(c.name, func(b *testing.B) {
			lfs := loopfs.ForTest(b, c.fstype, 1<<30)
			drv, err := c.open(context.Background(), filepath.Join(lfs.Dir, "home"), nil)
			mustDo(b, err)
			b.Cleanup(func() { drv.Close() })
			benchDiff(b, drv)
		})
	}
}

func benchDiff(b *testing.B, drv drivers.Driver) {
	ctx := context.Background()
	withMount(b, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, "p-active", "") }, func(dir string) {
		for i := 0; i < 10000; i++ {
			p := filepath.Join(dir, fmt.Sprintf("d%03d/f%05d", i%100, i))
			mustDo(b, os.MkdirAll(filepath.Dir(p), 0o755))
			mustDo(b, os.WriteFile(p, []byte(p), 0o644))
		}
	})
	mustDo(b, drv.Commit(ctx, "p", "p-active"))
	withMount(b, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, "c-active", "p") }, func(dir string) {
		for i := 0; i < 10000; i += 100 {
			p := filepath.Join(dir, fmt.Sprintf("d%03d/f%05d", i%100, i))
			mustDo(b, os.WriteFile(p, []byte("changed"), 0o644))
		}
	})
	mustDo(b, drv.Commit(ctx, "c", "c-active"))
	withMount(b, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-p", "p") }, func(lower string) {
		withMount(b, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-c", "c") }, func(upper string) {
			var nat, gen drivertest.Samples
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				_, err := layer.DiffSnapshot(ctx, io.Discard, drv, "c")
				mustDo(b, err)
				nat = append(nat, time.Since(start))
				start = time.Now()
				_, err = layer.Diff(ctx, io.Discard, lower, upper)
				mustDo(b, err)
				gen = append(gen, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64(nat.Median()), "native-median-ns")
			b.ReportMetric(float64(gen.Median()), "generic-median-ns")
			b.ReportMetric(float64(gen.Median())/float64(nat.Median()), "generic/native")
		})
	})
}
