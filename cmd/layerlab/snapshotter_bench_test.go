package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	ctroverlay "github.com/containerd/containerd/v2/plugins/snapshots/overlay"

	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/drivers/containerd"
)

// medianMs is the median of ds in milliseconds.
func medianMs(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	return float64(m) / float64(time.Millisecond)
}

// BenchmarkCtrRunProxy times `ctr run --rm busybox true` on containerd's
// built-in overlayfs snapshotter and on layerlab's overlay2 through
// `snapshotter serve`, alternating in one containerd, and reports both
// medians and their ratio (the target is at most 1.1). Run it with
// -benchtime=Nx for N pairs:
//
//	go test -run '^$' -bench CtrRunProxy -benchtime 30x ./cmd/layerlab/
func BenchmarkCtrRunProxy(b *testing.B) {
	needContainerd(b)
	dir := b.TempDir()
	archive := archiveForContainerd(b, dir)
	s := &serveProc{name: "overlay2", root: filepath.Join(dir, "overlay2"), addr: filepath.Join(dir, "run", "overlay2.sock"), log: filepath.Join(dir, "serve-overlay2.log"), quiet: true}
	s.start(b)
	b.Cleanup(func() {
		if err := s.stop(b); err != nil {
			b.Error(err)
		}
	})
	c := startContainerd(b, dir, []*serveProc{s}, "overlayfs")
	snapshotters := []string{"overlayfs", "layerlab-overlay2"}
	for _, sn := range snapshotters {
		c.ctr(b, "images", "import", "--snapshotter", sn, archive)
		c.ctr(b, "run", "--rm", "--snapshotter", sn, busyboxRef, "warm-"+sn, "true")
	}
	times := map[string][]time.Duration{}
	n := 0
	for b.Loop() {
		for _, sn := range snapshotters {
			start := time.Now()
			c.ctr(b, "run", "--rm", "--snapshotter", sn, busyboxRef, fmt.Sprintf("b%d", n), "true")
			times[sn] = append(times[sn], time.Since(start))
			n++
		}
		slices.Reverse(snapshotters) // neither always goes first
	}
	builtin, proxied := medianMs(times["overlayfs"]), medianMs(times["layerlab-overlay2"])
	b.ReportMetric(builtin, "overlayfs-median-ms")
	b.ReportMetric(proxied, "layerlab-median-ms")
	b.ReportMetric(proxied/builtin, "ratio")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPrepareProxy times Prepare of an active snapshot on a committed
// parent through a proxy plugin (containerd's proxy client, over a unix
// socket, to another process) and in process (the same snapshotter
// called directly), for layerlab's overlay2 (`snapshotter serve`) and,
// as the reference, containerd's own overlayfs snapshotter served by the
// same gRPC server (startReference); all four alternate in one run, each
// on its own home, and each Prepare is removed untimed. It reports the
// medians and the ratios (layerlab's target is at most 1.3), and the
// medians of a Stat each way, whose difference is the cost of the hop
// itself.
//
//	go test -run '^$' -bench PrepareProxy -benchtime 500x ./cmd/layerlab/
func BenchmarkPrepareProxy(b *testing.B) {
	needRoot(b)
	dir := b.TempDir()
	s := &serveProc{name: "overlay2", root: filepath.Join(dir, "served"), addr: filepath.Join(dir, "overlay2.sock"), log: filepath.Join(dir, "serve.log"), quiet: true}
	s.start(b)
	b.Cleanup(func() {
		if err := s.stop(b); err != nil {
			b.Error(err)
		}
	})
	d, err := builtin.Registry().Open(context.Background(), "overlay2", filepath.Join(dir, "local"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	ref := startReference(b, dir)
	local, err := ctroverlay.NewSnapshotter(filepath.Join(dir, "ref-local"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { local.Close() })
	ctx := context.Background()
	sns := map[string]snapshots.Snapshotter{
		"proxy": s.client(b), "in-process": containerd.New(d),
		"ref-proxy": proxyClient(b, ref.addr, "ref"), "ref-in-process": local,
	}
	order := []string{"proxy", "in-process", "ref-proxy", "ref-in-process"}
	for _, name := range order {
		if _, err := sns[name].Prepare(ctx, "base-active", ""); err != nil {
			b.Fatal(err)
		}
		if err := sns[name].Commit(ctx, "base", "base-active"); err != nil {
			b.Fatal(err)
		}
	}
	times := map[string][]time.Duration{}
	n := 0
	for b.Loop() {
		for _, name := range order {
			sn, key := sns[name], fmt.Sprintf("k%d", n)
			start := time.Now()
			_, err := sn.Prepare(ctx, key, "base")
			times[name] = append(times[name], time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			// Stat costs the snapshotter next to nothing: through the
			// proxy it is the gRPC hop alone.
			start = time.Now()
			_, err = sn.Stat(ctx, key)
			times[name+"-stat"] = append(times[name+"-stat"], time.Since(start))
			if err != nil {
				b.Fatal(err)
			}
			if err := sn.Remove(ctx, key); err != nil {
				b.Fatal(err)
			}
			n++
		}
		slices.Reverse(order)
	}
	for _, pair := range [][3]string{{"proxy", "in-process", "ratio"}, {"ref-proxy", "ref-in-process", "ref-ratio"}} {
		proxied, direct := medianMs(times[pair[0]]), medianMs(times[pair[1]])
		b.ReportMetric(direct, pair[1]+"-median-ms")
		b.ReportMetric(proxied, pair[0]+"-median-ms")
		b.ReportMetric(proxied/direct, pair[2])
		b.ReportMetric(medianMs(times[pair[0]+"-stat"]), pair[0]+"-stat-median-ms")
		b.ReportMetric(medianMs(times[pair[1]+"-stat"]), pair[1]+"-stat-median-ms")
	}
	b.ReportMetric(0, "ns/op")
}
