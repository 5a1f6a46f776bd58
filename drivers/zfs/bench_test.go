package zfs

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// benchDriver opens the driver in a new home in the pool, closed when the
// benchmark ends (before the pool goes).
func benchDriver(b *testing.B, z *loopfs.ZFS) drivers.Driver {
	home, err := os.MkdirTemp(z.Dir, "bench-")
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(context.Background(), home, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// benchLayer commits name on parent with one file of n random bytes,
// written through the snapshot's mount as a container would.
func benchLayer(b *testing.B, d drivers.Driver, target, name, parent, file string, n int) {
	ctx := context.Background()
	ms, err := d.Prepare(ctx, name+"-active", parent)
	if err != nil {
		b.Fatal(err)
	}
	if err := mount.All(ms, target); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, n)
	rand.Read(data)
	err = os.WriteFile(filepath.Join(target, file), data, 0o644)
	if uerr := mount.UnmountAll(target); err == nil {
		err = uerr
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Commit(ctx, name, name+"-active"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPrepareRemove times Prepare plus Remove of a child of a chain
// of depth committed layers: a clone and a destroy, whatever the depth.
func BenchmarkPrepareRemove(b *testing.B) {
	z := loopfs.ForTestZFS(b, 0)
	ctx := context.Background()
	for _, depth := range []int{1, 32} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			d := benchDriver(b, z)
			target := b.TempDir()
			top := ""
			for i := 0; i < depth; i++ {
				name := fmt.Sprintf("layer-%d", i)
				benchLayer(b, d, target, name, top, name, 4096)
				top = name
			}
			var s drivertest.Samples
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				key := fmt.Sprintf("c-%d", i)
				start := time.Now()
				if _, err := d.Prepare(ctx, key, top); err != nil {
					b.Fatal(err)
				}
				if err := d.Remove(ctx, key); err != nil {
					b.Fatal(err)
				}
				s = append(s, time.Since(start))
			}
			b.ReportMetric(float64(s.Median()), "median-ns/op")
		})
	}
}

// BenchmarkAppend times a 1-byte append and fsync to a file a fresh child
// inherits: zfs writes the one changed block elsewhere, whatever the
// file's size. Only the write and the fsync are timed.
func BenchmarkAppend(b *testing.B) {
	z := loopfs.ForTestZFS(b, 0)
	ctx := context.Background()
	for _, size := range []struct {
		name string
		n    int
	}{{"4KiB", 4 << 10}, {"1MiB", 1 << 20}, {"64MiB", 64 << 20}} {
		b.Run("size="+size.name, func(b *testing.B) {
			d := benchDriver(b, z)
			target := b.TempDir()
			benchLayer(b, d, target, "parent", "", "file", size.n)
			var s drivertest.Samples
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				key := fmt.Sprintf("c-%d", i)
				ms, err := d.Prepare(ctx, key, "parent")
				if err != nil {
					b.Fatal(err)
				}
				if err := mount.All(ms, target); err != nil {
					b.Fatal(err)
				}
				f, err := os.OpenFile(filepath.Join(target, "file"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				_, err = f.Write([]byte{1})
				if err == nil {
					err = f.Sync()
				}
				elapsed := time.Since(start)
				b.StopTimer()
				s = append(s, elapsed)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				if err := mount.UnmountAll(target); err != nil {
					b.Fatal(err)
				}
				if err := d.Remove(ctx, key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(s.Median()), "median-ns/op")
		})
	}
}
