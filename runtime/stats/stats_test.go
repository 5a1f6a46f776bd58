package stats

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"

	"github.com/layerlab/layerlab/drivers/feature"
)

func TestParsers(t *testing.T) {
	kv := parseKV([]byte("cache 4096\nrss 8192\ntotal_inactive_file 12\nbad line here\nnum x\n"))
	if len(kv) != 3 || kv["total_inactive_file"] != 12 || kv["rss"] != 8192 {
		t.Errorf("parseKV: %v", kv)
	}
	blk := parseBlkioV1([]byte("7:0 Read 1024\n7:0 Write 4194304\n7:0 Sync 0\nTotal 4195328\n"))
	if len(blk) != 3 || blk[1].Major != 7 || blk[1].Op != "Write" || blk[1].Value != 4194304 {
		t.Errorf("parseBlkioV1: %+v", blk)
	}
	io := parseIOStat([]byte("254:0 rbytes=512 wbytes=4096 rios=1 wios=2 dbytes=0 dios=0\n"))
	if len(io.IoServiceBytesRecursive) != 2 || io.IoServiceBytesRecursive[1].Value != 4096 || io.IoServicedRecursive[1].Value != 2 || io.IoServiceBytesRecursive[0].Major != 254 {
		t.Errorf("parseIOStat: %+v", io)
	}
	usage, online, err := parseProcStat([]byte("cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 5 0 2 50 1 0 1 3 0 0\ncpu1 5 1 3 50 1 0 2 4 0 0\nintr 1\n"))
	if err != nil || usage != 121*1e7 || online != 2 {
		t.Errorf("parseProcStat: %d %d %v, want 1210000000 (steal left out) and 2", usage, online, err)
	}
	net := parseNetDev([]byte("Inter-|   Receive\n face |bytes\n    lo: 9 1 0 0 0 0 0 0 9 1 0 0 0 0 0 0\n  eth0: 100 2 0 1 0 0 0 0 300 4 0 0 0 0 0 0\n"))
	if len(net) != 1 || net["eth0"].RxBytes != 100 || net["eth0"].TxPackets != 4 || net["eth0"].RxDropped != 1 {
		t.Errorf("parseNetDev: %+v", net)
	}
}

// FuzzParse feeds one input to every kernel-file parser: none may panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("7:0 Read 1024\nTotal 1\n"))
	f.Add([]byte("254:0 rbytes=512 wbytes=4096 rios=1 wios=2\n"))
	f.Add([]byte("cpu  10 1 5 100 2 0 3 7 0 0\ncpu0 1 2 3 4 5 6 7\n"))
	f.Add([]byte("  eth0: 100 2 0 1 0 0 0 0 300 4 0 0 0 0 0 0\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for k := range parseKV(data) {
			if strings.Contains(k, "\n") {
				t.Fatalf("parseKV key %q", k)
			}
		}
		_ = parseBlkioV1(data)
		io := parseIOStat(data)
		if len(io.IoServiceBytesRecursive) != len(io.IoServicedRecursive) {
			t.Fatal("parseIOStat: bytes and ios differ in length")
		}
		if usage, _, err := parseProcStat(data); err == nil && usage == 0 {
			t.Fatal("parseProcStat: no error and no usage")
		}
		for name := range parseNetDev(data) {
			if name == "lo" {
				t.Fatal("parseNetDev kept lo")
			}
		}
	})
}

// benchCgroup makes an empty cgroup for the benchmarks (with this
// process's memory charged nowhere: no process joins it) and returns its
// path and libcontainer's manager of it.
func benchCgroup(b testing.TB) (string, cgroups.Manager) {
	if os.Geteuid() != 0 {
		feature.Skip(b, feature.Root, "making a cgroup needs root")
	}
	path := "/layerlab-stats-bench-" + strconv.Itoa(os.Getpid())
	m, err := manager.New(&cgroups.Cgroup{Path: path, Resources: &cgroups.Resources{SkipDevices: true}})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Apply(-1); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := m.Destroy(); err != nil {
			b.Error(err)
		}
		for _, p := range m.GetPaths() {
			if _, err := os.Stat(p); err == nil {
				b.Errorf("cgroup %s left behind", filepath.Clean(p))
			}
		}
	})
	return path, m
}

// BenchmarkRead compares this package's direct reads of one container's
// cgroup files with libcontainer's cgroup manager GetStats (which the
// Libcontainer executor could call instead): the cost docker stats pays
// per container.
func BenchmarkRead(b *testing.B) {
	path, m := benchCgroup(b)
	r, err := NewReader()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := r.Read(Target{ID: "x", Name: "x", Cgroup: path}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("libcontainer", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.GetStats(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestSampler: a started container's first reading is its previous one;
// the goroutine a request starts replaces it with later readings, and
// stops once nobody asks.
func TestSampler(t *testing.T) {
	path, _ := benchCgroup(t)
	r, err := NewReader()
	if err != nil {
		t.Fatal(err)
	}
	s := NewSampler(r, 300*time.Millisecond, time.Second)
	if _, _, ok := s.Previous("c"); ok {
		t.Fatal("Previous of a container never started: ok")
	}
	s.Started("c", path)
	_, at0, ok := s.Previous("c")
	if !ok || at0.IsZero() {
		t.Fatalf("Previous after Started: %v %v", at0, ok)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, at, _ := s.Previous("c")
		if at.After(at0) {
			if age := time.Since(at); age < 0 || age > 2*time.Second {
				t.Errorf("the sampler's reading is %v old", age)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sampler never read again")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sampler did not stop once nobody asked")
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stopped("c")
	if _, _, ok := s.Previous("c"); ok {
		t.Error("Previous of a stopped container: ok")
	}
}
