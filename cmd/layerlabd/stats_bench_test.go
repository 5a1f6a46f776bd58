package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkDockerStatsNoStream50 times docker stats against one
// layerlabd running 50 busybox sleep containers (the target:
// `docker stats --no-stream` under 0.5 s):
//
//   - cli: `docker stats --no-stream`, the real CLI, its process start
//     included. The CLI prints on the first tick of its own 500 ms
//     ticker, after every container's first reading arrived, so no daemon
//     makes it answer in under ~0.5 s; "first" is its very first call,
//     the sampler not yet running (precpu from the start readings).
//   - api: what the daemon owes the CLI, the 50 GET
//     /containers/{id}/stats?stream=0 the CLI sends at once, concurrently.
//   - ps: `docker ps`, the CLI's own cost for one call, for comparison.
//
// Each reports its median. Run it under the e2e lock:
//
//	flock -o /tmp/layerlab-e2e.lock go test -run '^$' -bench DockerStatsNoStream50 -benchtime 10x ./cmd/layerlabd
func BenchmarkDockerStatsNoStream50(b *testing.B) {
	const n = 50
	b.Cleanup(func() { killLeftovers(b) })
	e := startTestDaemon(b)
	c := cli{t: b, sock: e.sock, dir: e.tmp, d: e.d}
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	var ids []string
	for i := range n {
		out, code := c.run("run", "-d", "--name", "s"+strconv.Itoa(i), "busybox", "sleep", "1000")
		if code != 0 {
			b.Fatalf("run %d: %s", i, out)
		}
		ids = append(ids, strings.TrimSpace(out)[:12])
	}
	stats := func() {
		out, code := c.run("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != n {
			b.Fatalf("docker stats --no-stream: exit %d, %d lines, want %d:\n%s", code, len(lines), n, out)
		}
	}
	start := time.Now()
	stats()
	first := time.Since(start)
	client := apiClient(e.sock)
	api := func() {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, id := range ids {
			wg.Go(func() {
				resp, err := client.Get("http://layerlabd/v1.41/containers/" + id + "/stats?stream=0")
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				if body, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !strings.Contains(string(body), `"precpu_stats":{"cpu_usage":{"total_usage":`) {
					errs <- fmt.Errorf("stats %s: %d %s", id, resp.StatusCode, body)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	ps := func() { c.expect(0, "s49", "ps") }
	for _, bm := range []struct {
		name string
		f    func()
	}{{"cli", stats}, {"api", api}, {"ps", ps}} {
		b.Run(bm.name, func(b *testing.B) {
			var runs []time.Duration
			for b.Loop() {
				t0 := time.Now()
				bm.f()
				runs = append(runs, time.Since(t0))
			}
			slices.Sort(runs)
			b.ReportMetric(runs[len(runs)/2].Seconds(), "median-s")
			if bm.name == "cli" {
				b.ReportMetric(first.Seconds(), "first-s")
			}
			b.Logf("%s, %d containers: %v", bm.name, n, runs)
		})
	}
}
