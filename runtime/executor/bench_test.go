package executor_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/layerlab/layerlab/runtime/executor"
)

// BenchmarkRunTrue times a container's whole life, create + start + wait
// + delete of busybox `true`, and reports the median alongside the mean
// (one slow outlier, such as a cgroup rmdir that waits, skews the mean).
// Every iteration reuses one mounted overlay2 snapshot so the figure is
// the executor's alone; the storage driver's share is layerlab bench's.
func BenchmarkRunTrue(b *testing.B) {
	e := newEnv(b)
	rootfs := e.mountSnapshot(b, "bench", e.image)
	spec, err := executor.DefaultSpec([]string{"true"}, rootfs, executor.SpecOpts{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var times []time.Duration
	i := 0
	for b.Loop() {
		start := time.Now()
		c, err := e.ex.Create(ctx, fmt.Sprintf("bench%d", i), spec, executor.Stdio{})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			_ = c.Delete(ctx)
			b.Fatal(err)
		}
		exit, err := c.Wait(ctx)
		if err := c.Delete(ctx); err != nil {
			b.Fatal(err)
		}
		if err != nil || exit.Code != 0 {
			b.Fatalf("true: exit %+v, %v", exit, err)
		}
		times = append(times, time.Since(start))
		i++
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
}
