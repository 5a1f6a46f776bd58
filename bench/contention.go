package bench

// The concurrency workload asks whether one large operation on a driver
// stalls every other key on it (issue 8): Cheap goroutines do
// Prepare+Remove of parentless keys for a fixed time, first alone, then
// while one more goroutine repeatedly does a heavy operation that makes the
// driver do real disk work. Independent keys should barely notice: their
// p99 within 3x of alone, their throughput at least half.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/bench/stats"
	"github.com/layerlab/layerlab/drivers/mount"
)

// ContentionSpec sizes the concurrency workload.
type ContentionSpec struct {
	Cheap  int           // goroutines doing Prepare+Remove of parentless keys
	Phase  time.Duration // length of each phase (a loaded phase also lasts until one heavy operation is done)
	Rounds int           // alone/loaded phase pairs
	Size   int64         // bytes of the tree the heavy operation works on
}

// The heavy operations, named by the call that is timed.
const (
	// heavyPrepareChild prepares a child of a committed parent holding
	// Size bytes, then removes it: vfs copies the whole parent.
	heavyPrepareChild = "prepare-child"
	// heavyCommitChild prepares a child of the parent and commits it,
	// then removes the result: classic overlay builds the layer's
	// complete tree, a hardlink per file of the parent.
	heavyCommitChild = "commit-child"
	// heavyCommitWritten writes Size bytes into a new base snapshot
	// (untimed, through its mount, with no fsync), commits it and removes
	// it: a driver whose Commit takes a filesystem snapshot (zfs, btrfs,
	// devicemapper) flushes the written data there.
	heavyCommitWritten = "commit-written"
)

// heavyKind is the heavy operation that makes driver do the most disk
// work of its own.
func heavyKind(driver string) string {
	switch driver {
	case "vfs":
		return heavyPrepareChild
	case "overlay":
		return heavyCommitChild
	}
	return heavyCommitWritten
}

// treeFile is the size of each file of the heavy operation's tree: the
// tree has Size/treeFile files (8192 in 256 MiB), so that per-file work
// (classic overlay's hardlinks, inodes) counts as in an image of many
// files, not only bytes.
const treeFile = 32 * kib

// writeTree writes size bytes into dir as files of treeFile bytes, 256 to
// a directory, without fsync (the caller decides when data goes to disk).
func writeTree(dir string, size int64) error {
	chunk := pattern(int(treeFile), size)
	for i := int64(0); i*treeFile < size; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%d", i/256))
		if i%256 == 0 {
			if err := os.Mkdir(sub, 0o755); err != nil {
				return err
			}
		}
		binary.LittleEndian.PutUint64(chunk, uint64(i)) // no two files alike
		n := min(treeFile, size-i*treeFile)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), chunk[:n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// contention measures one target: the cheap goroutines, and the heavy
// operation beside them in the loaded phases.
type contention struct {
	t      *target
	spec   ContentionSpec
	heavy  string
	parent string // the committed parent the heavy operation needs, if any
}

// newContention prepares the measurement: the parent holding Size bytes
// when the heavy operation needs one, on disk before the first phase.
func newContention(ctx context.Context, t *target, spec ContentionSpec) (*contention, error) {
	if spec.Cheap < 1 || spec.Phase <= 0 || spec.Size <= 0 {
		return nil, fmt.Errorf("concurrency workload: %d cheap goroutines, phase %v, size %d: want all positive", spec.Cheap, spec.Phase, spec.Size)
	}
	c := &contention{t: t, spec: spec, heavy: heavyKind(t.info.Driver)}
	if c.heavy != heavyCommitWritten {
		var err error
		if c.parent, err = t.layer(ctx, "", func(dir string) error { return writeTree(dir, spec.Size) }); err != nil {
			return nil, fmt.Errorf("concurrency workload: parent of %d bytes: %w", spec.Size, err)
		}
	}
	return c, nil
}

// close removes the parent.
func (c *contention) close(ctx context.Context) error {
	if c.parent == "" {
		return nil
	}
	return c.t.d.Remove(ctx, c.parent)
}

// phaseResult is what one phase measured.
type phaseResult struct {
	cheap   []float64     // ns of each cheap Prepare+Remove
	elapsed time.Duration // from the start to the end of the last cheap cycle
	heavy   []float64     // ns of each heavy operation's timed call
}

// rate is the cheap cycles per second.
func (p phaseResult) rate() float64 {
	if p.elapsed <= 0 {
		return 0
	}
	return float64(len(p.cheap)) / p.elapsed.Seconds()
}

// percentile is the cheap cycles' pth percentile, in ns.
func (p phaseResult) percentile(q float64) float64 {
	s := append([]float64(nil), p.cheap...)
	sort.Float64s(s)
	return stats.Percentile(s, q)
}

// pool joins phases into one, as if run back to back.
func pool(ps []phaseResult) phaseResult {
	var out phaseResult
	for _, p := range ps {
		out.cheap = append(out.cheap, p.cheap...)
		out.heavy = append(out.heavy, p.heavy...)
		out.elapsed += p.elapsed
	}
	return out
}

// round runs one phase alone and one loaded, each after a sync so that
// neither pays for the other's (or the setup's) dirty data.
func (c *contention) round(ctx context.Context) (alone, loaded phaseResult, err error) {
	unix.Sync()
	if alone, err = c.phase(ctx, false); err != nil {
		return alone, loaded, err
	}
	unix.Sync()
	loaded, err = c.phase(ctx, true)
	return alone, loaded, err
}

// phase runs the cheap goroutines for the phase's time and, when loaded,
// the heavy goroutine beside them, starting heavy operations until the
// time is up; a loaded phase lasts at least until one heavy operation is
// complete, so that it always contains the driver's heavy work and not
// only a start of it.
func (c *contention) phase(ctx context.Context, loaded bool) (phaseResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := c.t.key("conc")
	var (
		mu   sync.Mutex
		errs []error
		res  phaseResult
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	stop := make(chan struct{})
	heavyDone := make(chan struct{})
	var oneHeavy atomic.Bool
	start := time.Now()
	deadline := start.Add(c.spec.Phase)
	if loaded {
		go func() {
			defer close(heavyDone)
			dir := filepath.Join(c.t.work, prefix+"-heavy")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fail(err)
				return
			}
			defer os.Remove(dir)
			// No new heavy operation once the phase's time is up and one
			// is done: the cheap cycles still in flight end the phase.
			for i := 0; i == 0 || time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				took, err := c.heavyOnce(ctx, fmt.Sprintf("%s-h%d", prefix, i), dir)
				if err != nil {
					fail(fmt.Errorf("heavy %s: %w", c.heavy, err))
					return
				}
				mu.Lock()
				res.heavy = append(res.heavy, float64(took))
				mu.Unlock()
				oneHeavy.Store(true)
			}
		}()
	} else {
		close(heavyDone)
		oneHeavy.Store(true)
	}
	lat := make([][]float64, c.spec.Cheap)
	var wg sync.WaitGroup
	for g := range lat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && (time.Now().Before(deadline) || !oneHeavy.Load()); i++ {
				key := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				t0 := time.Now()
				if _, err := c.t.d.Prepare(ctx, key, ""); err != nil {
					fail(fmt.Errorf("cheap prepare: %w", err))
					return
				}
				if err := c.t.d.Remove(ctx, key); err != nil {
					fail(fmt.Errorf("cheap remove: %w", err))
					return
				}
				lat[g] = append(lat[g], float64(time.Since(t0)))
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	close(stop)
	<-heavyDone
	for _, l := range lat {
		res.cheap = append(res.cheap, l...)
	}
	return res, errors.Join(errs...)
}

// heavyOnce does one heavy operation under key (dir is a free mount
// point) and returns the time of its timed call.
func (c *contention) heavyOnce(ctx context.Context, key, dir string) (time.Duration, error) {
	d := c.t.d
	committed := key + "-c"
	switch c.heavy {
	case heavyPrepareChild:
		t0 := time.Now()
		if _, err := d.Prepare(ctx, key, c.parent); err != nil {
			return 0, err
		}
		took := time.Since(t0)
		return took, d.Remove(ctx, key)
	case heavyCommitChild:
		if _, err := d.Prepare(ctx, key, c.parent); err != nil {
			return 0, err
		}
	default:
		ms, err := d.Prepare(ctx, key, "")
		if err != nil {
			return 0, err
		}
		if err := mount.All(ms, dir); err != nil {
			return 0, errors.Join(err, d.Remove(ctx, key))
		}
		werr := writeTree(dir, c.spec.Size)
		if err := errors.Join(werr, mount.UnmountAll(dir)); err != nil {
			return 0, errors.Join(err, d.Remove(ctx, key))
		}
	}
	t0 := time.Now()
	if err := d.Commit(ctx, committed, key); err != nil {
		return 0, errors.Join(err, d.Remove(ctx, key))
	}
	took := time.Since(t0)
	return took, d.Remove(ctx, committed)
}

// contentionSummary is what issue 8 reads off a run: the cheap cycles'
// p50, p99 and throughput alone and loaded, pooled over rounds.
type contentionSummary struct {
	heavy                   string
	size                    int64
	alone, loaded           phaseResult
	p50Alone, p50Loaded     float64 // ns
	p99Alone, p99Loaded     float64 // ns
	rateAlone, rateLoaded   float64 // cheap cycles per second
	heavyMedian             float64 // ns of the heavy operation's timed call
	p99Ratio, rateRatio     float64 // loaded / alone
	cheapAlone, cheapLoaded int     // cycles measured
}

func (c *contention) summarize(alone, loaded []phaseResult) contentionSummary {
	a, l := pool(alone), pool(loaded)
	s := contentionSummary{
		heavy: c.heavy, size: c.spec.Size, alone: a, loaded: l,
		p50Alone: a.percentile(50), p50Loaded: l.percentile(50),
		p99Alone: a.percentile(99), p99Loaded: l.percentile(99),
		rateAlone: a.rate(), rateLoaded: l.rate(),
		heavyMedian: stats.Median(l.heavy),
		cheapAlone:  len(a.cheap), cheapLoaded: len(l.cheap),
	}
	if s.p99Alone > 0 {
		s.p99Ratio = s.p99Loaded / s.p99Alone
	}
	if s.rateAlone > 0 {
		s.rateRatio = s.rateLoaded / s.rateAlone
	}
	return s
}

func (s contentionSummary) String() string {
	ms := func(ns float64) string { return fmt.Sprintf("%.1f ms", ns/1e6) }
	return fmt.Sprintf("cheap Prepare+Remove p50 %s -> %s, p99 %s -> %s (%.1fx), throughput %.0f -> %.0f/s (%.0f%% kept), while %s of %d MiB ran %d times (median %s)",
		ms(s.p50Alone), ms(s.p50Loaded), ms(s.p99Alone), ms(s.p99Loaded), s.p99Ratio,
		s.rateAlone, s.rateLoaded, 100*s.rateRatio, s.heavy, s.size>>20, len(s.loaded.heavy), ms(s.heavyMedian))
}

// concurrency is the workload: Rounds of (alone, loaded) phases. Series:
// the cheap cycles' latencies alone and loaded, their throughput per
// phase, the heavy operation's latency, and per round the two ratios as
// slowdowns (lower is better, 1 is no effect): p99 loaded/alone and
// throughput alone/loaded. The targets are p99 slowdown <= 3 and
// throughput slowdown <= 2; the run notes give both in the terms.
func concurrency(ctx context.Context, r *run, t *target) error {
	c, err := newContention(ctx, t, r.prof.Contention)
	if err != nil {
		return err
	}
	p := func(op, unit string) point {
		return point{Workload: "concurrency", Op: op, Target: t.info.ID, Unit: unit}
	}
	var alone, loaded []phaseResult
	for i := 0; i < r.prof.Contention.Rounds; i++ {
		a, l, err := c.round(ctx)
		if err != nil {
			return errors.Join(err, c.close(ctx))
		}
		alone, loaded = append(alone, a), append(loaded, l)
		for _, v := range a.cheap {
			r.rec.add(p("prepare+remove/alone", "ns"), v)
		}
		for _, v := range l.cheap {
			r.rec.add(p("prepare+remove/loaded", "ns"), v)
		}
		for _, v := range l.heavy {
			r.rec.add(p("heavy:"+c.heavy, "ns"), v)
		}
		r.rec.add(p("throughput/alone", "ops/s"), a.rate())
		r.rec.add(p("throughput/loaded", "ops/s"), l.rate())
		if q := a.percentile(99); q > 0 {
			r.rec.add(p("p99-slowdown", "ratio"), l.percentile(99)/q)
		}
		if l.rate() > 0 {
			r.rec.add(p("throughput-slowdown", "ratio"), a.rate()/l.rate())
		}
	}
	r.note(fmt.Sprintf("concurrency on %s: %s", t.info.ID, c.summarize(alone, loaded)))
	return c.close(ctx)
}
