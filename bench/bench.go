// Package bench is layerlab's benchmark harness: it opens each driver on
// backing filesystems it makes (loop-backed ext4, xfs, btrfs and a zfs
// pool) or on a directory the user gives, runs the workloads of a profile
// against every driver in an order shuffled per workload, keeps every raw
// sample with its environment, and returns results that package reports
// renders.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
)

// Config says what to run.
type Config struct {
	Registry *drivers.Registry
	Profile  Profile
	// Drivers to measure; empty means every registered driver that is
	// available here (the others are listed in the results' notes).
	Drivers []string
	// Options are driver options, by driver name.
	Options map[string]drivers.Options
	// Root, when set, is a directory on a real filesystem to run in
	// instead of loop filesystems; drivers that cannot use it are skipped.
	Root string
	// Scratch holds the loop images (sparse files); os.TempDir() if empty.
	Scratch         string
	Seed            int64
	Version, Commit string
	// Progress receives a one-line progress display; nil for none.
	Progress io.Writer
}

type workload func(context.Context, *run, *target) error

func workloads() map[string]workload {
	return map[string]workload{
		"snapshot-ops": snapshotOps,
		"depth":        depth,
		"copy-up":      copyUp,
		"small-files":  smallFiles,
		"write":        write,
		"unpack":       unpack,
		"density":      density,
		"write-amp":    writeAmp,
		"concurrency":  concurrency,
		"lifecycle":    lifecycle,
		"build":        buildWorkload,
	}
}

// run is the state of one harness run.
type run struct {
	prof    Profile
	rec     *recorder
	discard *recorder // warm-up samples go here
	mu      sync.Mutex
	notes   []string
	floors  map[string]bool
	seed    int64
	layers  [][]byte // the generated image, made on first use
}

func (r *run) recorderFor(i int) *recorder {
	if i < r.prof.Warmup {
		return r.discard
	}
	return r.rec
}

func (r *run) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, s)
}

// noteOnce adds s to the notes the first time key is given: what a
// workload measures, said once per run rather than once per target.
func (r *run) noteOnce(key, s string) {
	if !r.seenFloor("note:"+key, 0) {
		r.note(s)
	}
}

// seenFloor reports whether a floor was already measured (floors that do
// not depend on the driver are measured once per backing filesystem), and
// marks it measured.
func (r *run) seenFloor(id string, param int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := fmt.Sprintf("%s|%d", id, param)
	seen := r.floors[key]
	r.floors[key] = true
	return seen
}

// Run validates cfg (see Validate), runs the profile and returns every
// sample. On workload failures it goes on with the rest and returns the
// results together with the errors. When ctx is cancelled (Ctrl-C) it
// stops, tears down what it made and returns what it has, marked Partial,
// with an error wrapping context.Cause(ctx).
func Run(ctx context.Context, cfg Config) (*result.Results, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	all := workloads()
	res := &result.Results{Schema: result.Schema, Profile: cfg.Profile.Name, Started: time.Now().UTC()}
	res.Machines = []result.Environment{environment(cfg.Version, cfg.Commit)}
	r := &run{prof: cfg.Profile, rec: newRecorder(), discard: newRecorder(), floors: map[string]bool{}, seed: cfg.Seed}
	scratch := cfg.Scratch
	if scratch == "" {
		scratch = os.TempDir()
	}

	targets, err := openTargets(ctx, cfg, r, scratch)
	// Torn down before the results are finished, so what fails in the
	// teardown is in their notes; the defer covers a panic.
	closeAll := func() {
		for _, t := range targets {
			if err := t.close(); err != nil {
				r.note(fmt.Sprintf("tear down %s: %v", t.info.ID, err))
			}
		}
		targets = nil
	}
	defer closeAll()
	for _, t := range targets {
		res.Targets = append(res.Targets, t.info)
	}
	var errs []error
	stopped := ""
	switch {
	case ctx.Err() != nil:
		stopped = fmt.Sprintf("PARTIAL RESULTS: stopped (%v) while making the backing filesystems: nothing was measured", context.Cause(ctx))
	case err != nil:
		return nil, err
	case len(targets) == 0:
		return nil, fmt.Errorf("no driver can run here: %s: %w", strings.Join(r.notes, "; "), drivers.ErrUnavailable)
	default:
		errs, stopped = measure(ctx, cfg, r, targets, all, res.Started)
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "\r\033[K")
	}
	closeAll()
	res.Series = r.rec.done(cfg.Seed)
	res.Notes = r.notes
	res.Finished = time.Now().UTC()
	if stopped != "" {
		// First, so a reader sees it before any figure.
		res.Partial = true
		res.Notes = append([]string{stopped}, res.Notes...)
		errs = append(errs, fmt.Errorf("bench interrupted, results are partial: %w", context.Cause(ctx)))
	}
	return res, errors.Join(errs...)
}

// measure runs every workload against every target, in an order shuffled
// per workload, until done or ctx is cancelled; then it returns the note
// that says where it stopped.
func measure(ctx context.Context, cfg Config, r *run, targets []*target, all map[string]workload, start time.Time) (errs []error, stopped string) {
	rng := rand.New(rand.NewSource(cfg.Seed))
	steps, step := len(cfg.Profile.Workloads)*len(targets), 0
	for _, name := range cfg.Profile.Workloads {
		order := append([]*target(nil), targets...)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, t := range order {
			step++
			progress(cfg.Progress, step, steps, start, name, t.info.ID)
			if ctx.Err() != nil {
				return errs, fmt.Sprintf("PARTIAL RESULTS: stopped (%v) before %s on %s, step %d of %d: this and the later steps were not measured", context.Cause(ctx), name, t.info.ID, step, steps)
			}
			err := all[name](ctx, r, t)
			if ctx.Err() != nil {
				// The error is the interruption's; the series of this
				// step hold the samples taken before it.
				return errs, fmt.Sprintf("PARTIAL RESULTS: stopped (%v) during %s on %s, step %d of %d: its series hold the samples taken until then; the later steps were not measured", context.Cause(ctx), name, t.info.ID, step, steps)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s on %s: %w", name, t.info.ID, err))
				r.note(fmt.Sprintf("%s on %s failed: %v", name, t.info.ID, err))
			}
		}
	}
	return errs, ""
}

// openTargets opens every requested driver on each of its backings. A
// driver named explicitly, or given options, that fails for another
// reason than being unavailable here fails the run (an option the driver
// refuses on this filesystem is the user's to fix, not a driver to skip);
// the targets opened so far are returned for the caller to close.
func openTargets(ctx context.Context, cfg Config, r *run, scratch string) ([]*target, error) {
	explicit := len(cfg.Drivers) > 0
	var targets []*target
	for _, name := range cfg.runDrivers() {
		list := backings(name)
		if cfg.Root != "" {
			list = list[:1] // the filesystem under --root, whatever it is
		}
		for _, b := range list {
			if ctx.Err() != nil {
				return targets, ctx.Err()
			}
			t, err := newTarget(ctx, cfg.Registry, name, b, scratch, cfg.Root, cfg.Options[name])
			if err != nil {
				if (explicit || len(cfg.Options[name]) > 0) && !errors.Is(err, drivers.ErrUnavailable) {
					return targets, err
				}
				r.note(fmt.Sprintf("skipped %s on %s: %v", name, b, err))
				continue
			}
			targets = append(targets, t)
		}
	}
	return targets, nil
}

func progress(w io.Writer, step, steps int, start time.Time, workload, target string) {
	if w == nil {
		return
	}
	const width = 24
	done := width * (step - 1) / steps
	bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
	fmt.Fprintf(w, "\r\033[K[%s] %d/%d %s: %s on %s", bar, step, steps, time.Since(start).Round(time.Second), workload, target)
}
