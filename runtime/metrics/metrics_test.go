package metrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"

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

func TestCgroupFiles(t *testing.T) {
	r, w := blkioV1("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n7:3 Read 1\n7:3 Write 2\nTotal 12291\n")
	if r != 4097 || w != 8194 {
		t.Errorf("blkioV1: %d %d", r, w)
	}
	rb, wb, ri, wi := ioStatV2("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n7:3 rbytes=1 wbytes=2 rios=3 wios=4\n\n")
	if rb != 4097 || wb != 8194 || ri != 4 || wi != 6 {
		t.Errorf("ioStatV2: %d %d %d %d", rb, wb, ri, wi)
	}
}

// TestReadCgroup reads a container's figures from the files cgroup v1 and
// v2 keep them in, as the kernel formats them (a fake cgroupfs in a
// temporary directory: this host's v2 mount has no cpu or memory, and the
// guest runs no scrape).
func TestReadCgroup(t *testing.T) {
	cgroups.TestMode = true // lets the library read files outside cgroupfs
	t.Cleanup(func() { cgroups.TestMode = false })
	root := t.TempDir()
	write := func(dir string, files map[string]string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	const ctr = "/layerlab/abc"
	v1 := cgroupFS{cpuacct: filepath.Join(root, "cpuacct"), memory: filepath.Join(root, "memory"), blkio: filepath.Join(root, "blkio"), pids: filepath.Join(root, "pids")}
	write(v1.cpuacct+ctr, map[string]string{"cpuacct.usage": "1500000000\n"})
	write(v1.memory+ctr, map[string]string{"memory.usage_in_bytes": "933888\n", "memory.limit_in_bytes": "9223372036854771712\n"})
	write(v1.blkio+ctr, map[string]string{
		"blkio.throttle.io_service_bytes_recursive": "7:3 Read 4096\n7:3 Write 1048576\n7:3 Sync 0\n7:3 Total 1052672\nTotal 1052672\n",
		"blkio.throttle.io_serviced_recursive":      "7:3 Read 1\n7:3 Write 256\nTotal 257\n",
	})
	write(v1.pids+ctr, map[string]string{"pids.current": "3\n"})
	u := v1.read(ctr)
	if !u.cpuOK || u.cpuSeconds != 1.5 || !u.memOK || u.memory != 933888 || u.limitOK || !u.blkioOK ||
		u.readBytes != 4096 || u.wBytes != 1048576 || u.readIOs != 1 || u.writeIOs != 256 || !u.pidsOK || u.pids != 3 {
		t.Errorf("v1: %+v", u)
	}
	write(v1.memory+ctr, map[string]string{"memory.limit_in_bytes": "67108864\n"})
	if u := v1.read(ctr); !u.limitOK || u.limit != 64<<20 {
		t.Errorf("v1 with --memory 64m: %+v", u)
	}

	v2 := cgroupFS{v2: filepath.Join(root, "unified")}
	write(v2.v2+ctr, map[string]string{
		"cpu.stat":       "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
		"memory.current": "1048576\n", "memory.max": "max\n",
		"io.stat":      "7:3 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		"pids.current": "2\n",
	})
	u = v2.read(ctr)
	if !u.cpuOK || u.cpuSeconds != 2.5 || u.memory != 1048576 || u.limitOK || u.readBytes != 4096 || u.wBytes != 8192 ||
		u.readIOs != 1 || u.writeIOs != 2 || u.pids != 2 {
		t.Errorf("v2: %+v", u)
	}
	write(v2.v2+ctr, map[string]string{"memory.max": "67108864\n"})
	if u := v2.read(ctr); !u.limitOK || u.limit != 64<<20 {
		t.Errorf("v2 with --memory 64m: %+v", u)
	}
	if u := v2.read("/layerlab/gone"); u.any() {
		t.Errorf("a cgroup that is gone: %+v", u)
	}
}
