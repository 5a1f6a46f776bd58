package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkMetricsScrape times GET /metrics of a layerlabd running 50
// busybox sleep containers (the target: under 50 ms), reading
// their cgroups at each scrape. The containers are started once; the
// sub-benchmark scrapes and reports the median besides the mean.
//
//	flock -o /tmp/layerlab-e2e.lock go test -run '^$' -bench BenchmarkMetricsScrape -benchtime 200x ./cmd/layerlabd
func BenchmarkMetricsScrape(b *testing.B) {
	const n = 50
	e, c := startMetricsDaemon(b)
	for i := range n {
		c.expect(0, "", "run", "-d", "--name", fmt.Sprintf("s%d", i), "busybox", "sleep", "600")
	}
	client := netnsClient(e.d.cmd.Process.Pid)
	const url = "http://127.0.0.1:9323/metrics"
	if got := strings.Count(get(b, client, url), "\nlayerlab_container_pids{"); got != n {
		b.Fatalf("the scrape reports %d containers, want %d", got, n)
	}
	b.Run(fmt.Sprintf("containers=%d", n), func(b *testing.B) {
		took := make([]time.Duration, 0, b.N)
		for b.Loop() {
			start := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms/scrape")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms/scrape")
	})
}
