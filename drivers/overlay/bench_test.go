package overlay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// samples records per-iteration times so the benchmarks can report the
// median next to Go's mean: the machine is shared and means chase outliers.
type samples []time.Duration

func (s samples) report(b *testing.B) {
	if len(s) == 0 {
		return
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	b.ReportMetric(float64(s[len(s)/2].Nanoseconds()), "median-ns/op")
	b.ReportMetric(float64(s[len(s)*95/100].Nanoseconds()), "p95-ns/op")
}

// benchHome opens overlay2 on a fresh ext4 loop filesystem with a
// committed one-layer parent holding one file.
func benchHome(b *testing.B) (*loopfs.FS, drivers.Driver) {
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
	dir := filepath.Join(fs.Dir, "mnt-parent")
	os.Mkdir(dir, 0o755)
	if err := mount.All(ms, dir); err != nil {
		b.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(dir, "file"), []byte("parent"), 0o644)
	mount.Unmount(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Commit(ctx, "parent", "parent-active"); err != nil {
		b.Fatal(err)
	}
	return fs, d
}

// BenchmarkOverlay2Cycle is the full container-storage cycle on a
// one-layer parent: Prepare, mount, unmount, Remove, with the metadata
// committed durably at Prepare and at Remove.
func BenchmarkOverlay2Cycle(b *testing.B) {
	fs, d := benchHome(b)
	ctx := context.Background()
	target := filepath.Join(fs.Dir, "target")
	os.Mkdir(target, 0o755)
	var s samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		key := fmt.Sprintf("c-%d", i)
		ms, err := d.Prepare(ctx, key, "parent")
		if err != nil {
			b.Fatal(err)
		}
		if err := mount.All(ms, target); err != nil {
			b.Fatal(err)
		}
		if err := mount.Unmount(target); err != nil {
			b.Fatal(err)
		}
		if err := d.Remove(ctx, key); err != nil {
			b.Fatal(err)
		}
		s = append(s, time.Since(start))
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkOverlay2Floor is what the cycle cannot go below: mount(2) and
// umount(2) of the same overlay (its directories made once, beforehand)
// plus one durable metadata commit, an fsync'd write on the same filesystem.
func BenchmarkOverlay2Floor(b *testing.B) {
	fs, d := benchHome(b)
	ctx := context.Background()
	ms, err := d.Prepare(ctx, "floor", "parent")
	if err != nil {
		b.Fatal(err)
	}
	flags, data := uintptr(0), ""
	for _, o := range ms[0].Options {
		if data != "" {
			data += ","
		}
		data += o
	}
	target := filepath.Join(fs.Dir, "target")
	os.Mkdir(target, 0o755)
	meta, err := os.OpenFile(filepath.Join(fs.Dir, "meta"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer meta.Close()
	record := make([]byte, 4096)
	var s samples
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
			b.Fatal(err)
		}
		if err := unix.Unmount(target, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := meta.WriteAt(record, 0); err != nil {
			b.Fatal(err)
		}
		if err := meta.Sync(); err != nil {
			b.Fatal(err)
		}
		s = append(s, time.Since(start))
	}
	b.StopTimer()
	s.report(b)
}
