package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/vfs"
)

// scrape returns the registry's text exposition.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// bare hides every optional interface of a driver.
type bare struct{ drivers.Driver }

// TestInstrument times a real vfs driver's operations, counts an error,
// and keeps the optional interfaces reachable: passed on for vfs (a
// core.Driver), drivers.ErrNotImplemented for a driver without them, so
// layer.DiffSnapshot still falls back to comparing views.
func TestInstrument(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the diff through the wrapper bind-mounts vfs snapshots")
	}
	ctx := context.Background()
	raw, err := vfs.New(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	m := New()
	d := m.Instrument("vfs", raw)
	if Unwrap(d) != drivers.Driver(raw) {
		t.Fatal("Unwrap does not return the wrapped driver")
	}
	if _, err := d.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mounts(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Commit(ctx, "base", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.View(ctx, "v", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prepare(ctx, "b", "nosuch"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("prepare on a missing parent: %v", err)
	}
	// vfs's own answer, passed through: it keeps no change record.
	if _, err := d.(drivers.Differ).Changes(ctx, "v"); !errors.Is(err, drivers.ErrNotImplemented) || !strings.Contains(err.Error(), "compare mounted views") {
		t.Fatalf("Changes through the wrapper: %v, want vfs's own not-implemented", err)
	}
	hidden := m.Instrument("bare", bare{raw})
	if _, err := hidden.(drivers.Differ).Changes(ctx, "v"); !errors.Is(err, drivers.ErrNotImplemented) {
		t.Fatalf("Changes of a driver without Differ: %v", err)
	}
	if err := hidden.(drivers.ChangeWalker).WalkChanges(ctx, "v", func(string) error { t.Fatal("start called"); return nil }, nil); !errors.Is(err, drivers.ErrNotImplemented) {
		t.Fatalf("WalkChanges of a driver without ChangeWalker: %v", err)
	}
	if err := d.Remove(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	m.Applied("vfs", 1234)
	out := scrape(t, m)
	for _, want := range []string{
		`layerlab_driver_operation_duration_seconds_count{driver="vfs",op="prepare"} 2`,
		`layerlab_driver_operation_duration_seconds_count{driver="vfs",op="commit"} 1`,
		`layerlab_driver_operation_duration_seconds_count{driver="vfs",op="view"} 1`,
		`layerlab_driver_operation_duration_seconds_count{driver="vfs",op="remove"} 1`,
		`layerlab_driver_operation_duration_seconds_count{driver="vfs",op="mounts"} 1`,
		`layerlab_driver_operation_errors_total{driver="vfs",op="prepare"} 1`,
		`layerlab_driver_applied_bytes_total{driver="vfs"} 1234`,
		`layerlab_driver_applied_layers_total{driver="vfs"} 1`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// The diff of a snapshot through the wrapper works as without it.
	if _, err := layer.DiffSnapshot(ctx, io.Discard, d, "base"); err != nil {
		t.Fatalf("DiffSnapshot through the wrapper: %v", err)
	}
}

// TestContainerCollector: a scrape turns the stats reader's figures into
// the container series, blkio summed over devices and both spellings of
// the operations; a container that cannot be read is left out.
func TestContainerCollector(t *testing.T) {
	m := New()
	var s container.StatsResponse
	s.CPUStats.CPUUsage.TotalUsage = 1_500_000_000
	s.MemoryStats.Usage, s.MemoryStats.Limit = 933888, 64<<20
	s.BlkioStats.IoServiceBytesRecursive = []container.BlkioStatEntry{{Op: "Read", Value: 4096}, {Op: "Write", Value: 1 << 20}, {Op: "Total", Value: 9}, {Op: "read", Value: 1}}
	s.BlkioStats.IoServicedRecursive = []container.BlkioStatEntry{{Op: "Read", Value: 1}, {Op: "Write", Value: 256}}
	s.PidsStats.Current = 3
	m.Containers(ContainerSource{
		List: func() []Container { return []Container{{ID: "abc", Name: "web"}, {ID: "gone", Name: "old"}} },
		Read: func(c Container) (container.StatsResponse, error) {
			if c.ID == "gone" {
				return s, os.ErrNotExist
			}
			return s, nil
		},
	})
	out := scrape(t, m)
	for _, want := range []string{
		`layerlab_container_cpu_seconds_total{id="abc",name="web"} 1.5`,
		`layerlab_container_memory_usage_bytes{id="abc",name="web"} 933888`,
		`layerlab_container_memory_limit_bytes{id="abc",name="web"} 6.7108864e+07`,
		`layerlab_container_blkio_bytes_total{id="abc",name="web",op="read"} 4097`,
		`layerlab_container_blkio_bytes_total{id="abc",name="web",op="write"} 1.048576e+06`,
		`layerlab_container_blkio_ios_total{id="abc",name="web",op="write"} 256`,
		`layerlab_container_pids{id="abc",name="web"} 3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if strings.Contains(out, `id="gone"`) {
		t.Errorf("a container that could not be read is in the scrape")
	}
}
