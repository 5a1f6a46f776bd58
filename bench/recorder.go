package bench

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

// recorder collects samples into series, one per (workload, op, target,
// param value, cache state, unit).
type recorder struct {
	mu     sync.Mutex
	series map[string]*result.Series
	order  []string
}

func newRecorder() *recorder { return &recorder{series: map[string]*result.Series{}} }

// point names one series.
type point struct {
	Workload, Op, Target string
	Floor                bool
	Param                string
	Value                float64
	Cold                 bool
	Unit                 string
}

func (r *recorder) add(p point, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cache := "warm"
	if p.Cold {
		cache = "cold"
	}
	s := result.Series{Workload: p.Workload, Op: p.Op, Target: p.Target, Floor: p.Floor, Param: p.Param, Value: p.Value, Cache: cache, Unit: p.Unit}
	key := s.Key()
	if cur, ok := r.series[key]; ok {
		cur.Samples = append(cur.Samples, v)
		return
	}
	s.Samples = []float64{v}
	r.series[key] = &s
	r.order = append(r.order, key)
}

// time runs fn and records its duration in ns when it succeeds.
func (r *recorder) time(p point, fn func() error) error {
	p.Unit = "ns"
	start := time.Now()
	if err := fn(); err != nil {
		return fmt.Errorf("%s %s on %s: %w", p.Workload, p.Op, p.Target, err)
	}
	r.add(p, float64(time.Since(start)))
	return nil
}

// done summarizes every series, in the order first recorded.
func (r *recorder) done(seed int64) []result.Series {
	out := make([]result.Series, 0, len(r.order))
	for i, k := range r.order {
		s := *r.series[k]
		s.Summary = stats.Summarize(s.Samples, seed+int64(i))
		out = append(out, s)
	}
	return out
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// dropCaches empties the page, dentry and inode caches so the next sample
// reads from the device ("cold"). Dirty data is synced first.
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
}
