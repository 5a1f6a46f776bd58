package btrfs

import (
	"context"
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

// bench is the driver on a fresh btrfs loop filesystem, with a mount
// point on that filesystem so that loopfs's teardown unmounts it should a
// benchmark stop half-way.
type bench struct {
	ctx    context.Context
	d      drivers.Driver
	target string
	n      int
}

func newBench(b *testing.B, opts drivers.Options) *bench {
	fs := loopfs.ForTest(b, "btrfs", 0)
	ctx := context.Background()
	d, err := New(ctx, filepath.Join(fs.Dir, "home"), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	bn := &bench{ctx: ctx, d: d, target: filepath.Join(fs.Dir, "target")}
	if err := os.Mkdir(bn.target, 0o755); err != nil {
		b.Fatal(err)
	}
	return bn
}

// layer commits name on parent after fill has written into it.
func (bn *bench) layer(b *testing.B, name, parent string, fill func(dir string) error) {
	ms, err := bn.d.Prepare(bn.ctx, name+"-active", parent)
	if err != nil {
		b.Fatal(err)
	}
	if err := mount.All(ms, bn.target); err != nil {
		b.Fatal(err)
	}
	err = fill(bn.target)
	if uerr := mount.UnmountAll(bn.target); uerr != nil {
		b.Fatal(uerr)
	}
	if err != nil {
		b.Fatal(err)
	}
	if err := bn.d.Commit(bn.ctx, name, name+"-active"); err != nil {
		b.Fatal(err)
	}
}

func (bn *bench) key() string {
	bn.n++
	return fmt.Sprintf("c-%d", bn.n)
}

// BenchmarkPrepareRemove times Prepare and Remove of a child at the top of
// a chain of 1 and of 32 committed layers. A child is a snapshot of its
// parent's subvolume only, so the depth should not show. The qgroups=on
// cases open the driver with a size limit, which turns qgroups on: every
// snapshot then also pays for qgroup accounting.
func BenchmarkPrepareRemove(b *testing.B) {
	for _, depth := range []int{1, 32} {
		for _, qgroups := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("depth=%d/qgroups=%s", depth, qgroups), func(b *testing.B) {
				var opts drivers.Options
				if qgroups == "on" {
					opts = drivers.Options{"size": "1G"}
				}
				benchPrepareRemove(b, depth, opts)
			})
		}
	}
}

func benchPrepareRemove(b *testing.B, depth int, opts drivers.Options) {
	bn := newBench(b, opts)
	parent := ""
	for i := 0; i < depth; i++ {
		name := fmt.Sprintf("layer-%02d", i)
		bn.layer(b, name, parent, func(dir string) error {
			return os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644)
		})
		parent = name
	}
	var s, prepare, remove drivertest.Samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := bn.key()
		start := time.Now()
		if _, err := bn.d.Prepare(bn.ctx, key, parent); err != nil {
			b.Fatal(err)
		}
		prepared := time.Now()
		if err := bn.d.Remove(bn.ctx, key); err != nil {
			b.Fatal(err)
		}
		s = append(s, time.Since(start))
		prepare = append(prepare, prepared.Sub(start))
		remove = append(remove, time.Since(prepared))
	}
	b.ReportMetric(float64(s.Median()), "median-ns/op")
	b.ReportMetric(float64(prepare.Median()), "prepare-median-ns")
	b.ReportMetric(float64(remove.Median()), "remove-median-ns")
}

// BenchmarkAppendInherited times a 1-byte append and fsync to a file a
// fresh child inherits, for files of 4 KiB, 1 MiB and 64 MiB: redirect on
// write touches one block whatever the file's size (a copy-up driver
// copies the whole file first). Prepare, mount, open, close, unmount and
// Remove are outside the timed part.
func BenchmarkAppendInherited(b *testing.B) {
	files := []struct {
		name string
		size int
	}{{"4K", 4 << 10}, {"1M", 1 << 20}, {"64M", 64 << 20}}
	for _, file := range files {
		b.Run("size="+file.name, func(b *testing.B) {
			bn := newBench(b, nil)
			bn.layer(b, "parent", "", func(dir string) error {
				for _, f := range files {
					if err := writeSynced(filepath.Join(dir, f.name), f.size); err != nil {
						return err
					}
				}
				return nil
			})
			var s drivertest.Samples
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s = append(s, bn.appendOne(b, "parent", file.name))
			}
			b.ReportMetric(float64(s.Median()), "median-ns/op")
		})
	}
}

// appendOne runs one iteration of BenchmarkAppendInherited with the timer on
// only for the write and the fsync, and returns their time.
func (bn *bench) appendOne(b *testing.B, parent, name string) time.Duration {
	b.StopTimer()
	key := bn.key()
	ms, err := bn.d.Prepare(bn.ctx, key, parent)
	if err != nil {
		b.Fatal(err)
	}
	if err := mount.All(ms, bn.target); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(bn.target, name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	_, werr := f.Write([]byte{1})
	serr := f.Sync()
	took := time.Since(start)
	b.StopTimer()
	f.Close()
	if werr != nil || serr != nil {
		b.Fatalf("append to %s: %v, %v", name, werr, serr)
	}
	if err := mount.UnmountAll(bn.target); err != nil {
		b.Fatal(err)
	}
	if err := bn.d.Remove(bn.ctx, key); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return took
}

func writeSynced(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, min(n, mib))
	for i := range buf {
		buf[i] = byte(i*31 + 7)
	}
	for done := 0; done < n; done += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Sync()
}
