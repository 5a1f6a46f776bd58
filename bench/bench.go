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
	"sort"
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

// Run runs the profile and returns every sample. On workload failures it
// goes on with the rest and returns the results together with the errors.
func Run(ctx context.Context, cfg Config) (*result.Results, error) {
	all := workloads()
	for _, w := range cfg.Profile.Workloads {
		if all[w] == nil {
			return nil, fmt.Errorf("workload %q: %w", w, drivers.ErrInvalidArgument)
		}
	}
	res := &result.Results{Schema: result.Schema, Profile: cfg.Profile.Name, Started: time.Now().UTC()}
	res.Machines = []result.Environment{environment(cfg.Version, cfg.Commit)}
	r := &run{prof: cfg.Profile, rec: newRecorder(), discard: newRecorder(), floors: map[string]bool{}, seed: cfg.Seed}
	scratch := cfg.Scratch
	if scratch == "" {
		scratch = os.TempDir()
	}

	targets, err := openTargets(ctx, cfg, r, scratch)
	defer func() {
		for _, t := range targets {
			if err := t.close(); err != nil {
				r.note(fmt.Sprintf("tear down %s: %v", t.info.ID, err))
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("no driver can run here: %s: %w", strings.Join(r.notes, "; "), drivers.ErrUnavailable)
	}
	for _, t := range targets {
		res.Targets = append(res.Targets, t.info)
	}

	rng := rand.New(rand.NewSource(cfg.Seed))
	steps, step := len(cfg.Profile.Workloads)*len(targets), 0
	var errs []error
	for _, name := range cfg.Profile.Workloads {
		order := append([]*target(nil), targets...)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, t := range order {
			step++
			progress(cfg.Progress, step, steps, res.Started, name, t.info.ID)
			if err := all[name](ctx, r, t); err != nil {
				errs = append(errs, fmt.Errorf("%s on %s: %w", name, t.info.ID, err))
				r.note(fmt.Sprintf("%s on %s failed: %v", name, t.info.ID, err))
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "\r\033[K")
	}
	res.Series = r.rec.done(cfg.Seed)
	res.Notes = r.notes
	res.Finished = time.Now().UTC()
	return res, errors.Join(errs...)
}

// openTargets opens every requested driver on each of its backings.
func openTargets(ctx context.Context, cfg Config, r *run, scratch string) ([]*target, error) {
	names := cfg.Drivers
	explicit := len(names) > 0
	if !explicit {
		names = cfg.Registry.Names()
	}
	sort.Strings(names)
	var targets []*target
	for _, name := range names {
		if _, err := cfg.Registry.Get(name); err != nil {
			return targets, err
		}
		list := backings(name)
		if cfg.Root != "" {
			list = list[:1] // the filesystem under --root, whatever it is
		}
		for _, b := range list {
			t, err := newTarget(ctx, cfg.Registry, name, b, scratch, cfg.Root, cfg.Options[name])
			if err != nil {
				if explicit && !errors.Is(err, drivers.ErrUnavailable) {
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
