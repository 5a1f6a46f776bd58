package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// snapshotOps times each snapshot operation apart (prepare, mount,
// unmount, commit, view, the removal of that view, and the removal of a
// container's active snapshot: a child of the committed snapshot that was
// mounted and written to), then the full container-storage cycle
// (prepare+mount+umount+remove) interleaved with its floor (see
// cycleVsFloor).
func snapshotOps(ctx context.Context, r *run, t *target) error {
	base, err := t.layer(ctx, "", func(dir string) error { return writeFile(filepath.Join(dir, "f"), 4096, 1) })
	if err != nil {
		return err
	}
	p := func(op string) point { return point{Workload: "snapshot-ops", Op: op, Target: t.info.ID} }
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		rec := r.recorderFor(i)
		key := t.key("ops")
		var ms []drivers.Mount
		if err := rec.time(p("prepare"), func() (err error) { ms, err = t.d.Prepare(ctx, key, base); return err }); err != nil {
			return err
		}
		dir, err := t.dir(key)
		if err != nil {
			return err
		}
		if err := rec.time(p("mount"), func() error { return mount.All(ms, dir) }); err != nil {
			return err
		}
		if err := rec.time(p("unmount"), func() error { return mount.UnmountAll(dir) }); err != nil {
			return err
		}
		name := key + "-c"
		if err := rec.time(p("commit"), func() error { return t.d.Commit(ctx, name, key) }); err != nil {
			return err
		}
		view := key + "-v"
		if err := rec.time(p("view"), func() (err error) { _, err = t.d.View(ctx, view, name); return err }); err != nil {
			return err
		}
		if err := rec.time(p("remove-view"), func() error { return t.d.Remove(ctx, view) }); err != nil {
			return err
		}
		// A container's snapshot: what `docker rm` removes.
		c, err := t.child(ctx, name)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(c.dir, "hostname"), []byte(c.key), 0o644); err != nil {
			c.release(ctx)
			return err
		}
		if err := mount.UnmountAll(c.dir); err != nil {
			return err
		}
		os.Remove(c.dir)
		if err := rec.time(p("remove"), func() error { return t.d.Remove(ctx, c.key) }); err != nil {
			return err
		}
		if err := t.d.Remove(ctx, name); err != nil {
			return err
		}
	}
	return cycleVsFloor(ctx, r, t, base)
}

// cycleVsFloor times the container-storage cycle against its floor:
// mount(2) and umount(2) of the same mounts plus as many durable commits
// as the cycle makes, two (Prepare's and Remove's metadata transactions),
// each a 4 KiB write and fsync on the same filesystem.
func cycleVsFloor(ctx context.Context, r *run, t *target, base string) error {
	const commits = 2
	r.noteOnce("cycle-floor", fmt.Sprintf("snapshot-ops cycle: floor:mount+fsync/<target> is mount(2) and umount(2) of that target's own mounts plus %d durable commits, as many as the cycle makes (Prepare's and Remove's metadata transactions), each a 4 KiB write followed by fsync on the target's filesystem; a bbolt transaction syncs twice (its pages, then its meta page), so the floor is a lower bound. snapshot-ops remove is the removal of a container's active snapshot (a mounted and written child of a committed snapshot), remove-view that of a view", commits))
	// The floor's mounts: those of a snapshot prepared once.
	fkey := t.key("floor")
	fms, err := t.d.Prepare(ctx, fkey, base)
	if err != nil {
		return err
	}
	defer t.d.Remove(ctx, fkey)
	meta, err := os.OpenFile(filepath.Join(t.work, "floor-meta"), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer meta.Close()
	target, err := t.dir(fkey)
	if err != nil {
		return err
	}
	record := make([]byte, 4096)
	cycle := point{Workload: "snapshot-ops", Op: "cycle", Target: t.info.ID}
	// One floor per target: the mounts it replays are that driver's.
	floor := point{Workload: "snapshot-ops", Op: "cycle", Target: "floor:mount+fsync/" + t.info.ID, Floor: true}
	commit := func(n int) error {
		if _, err := meta.WriteAt(record, int64(n)*int64(len(record))); err != nil {
			return err
		}
		return meta.Sync()
	}
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		rec := r.recorderFor(i)
		if err := rec.time(cycle, func() error {
			key := t.key("cycle")
			ms, err := t.d.Prepare(ctx, key, base)
			if err != nil {
				return err
			}
			if err := mount.All(ms, target); err != nil {
				return err
			}
			if err := mount.Unmount(target); err != nil {
				return err
			}
			return t.d.Remove(ctx, key)
		}); err != nil {
			return err
		}
		if err := rec.time(floor, func() error {
			if err := commit(0); err != nil {
				return err
			}
			if err := mount.All(fms, target); err != nil {
				return err
			}
			if err := mount.Unmount(target); err != nil {
				return err
			}
			return commit(1)
		}); err != nil {
			return err
		}
	}
	return nil
}

// depth times prepare+mount of a child on chains of each depth, built up
// one layer at a time (each layer adds a file).
func depth(ctx context.Context, r *run, t *target) error {
	parent, built := "", 0
	max := t.d.Capabilities().MaxDepth
	for _, d := range r.prof.Depths {
		if max > 0 && d > max {
			r.note(fmt.Sprintf("depth: %s stops at %d layers (its declared maximum); %d not measured", t.info.ID, max, d))
			break
		}
		for ; built < d; built++ {
			n := built
			var err error
			if parent, err = t.layer(ctx, parent, func(dir string) error {
				return os.WriteFile(filepath.Join(dir, fmt.Sprintf("layer-%d", n)), []byte("x"), 0o644)
			}); err != nil {
				return fmt.Errorf("depth %d: %w", built+1, err)
			}
		}
		pt := point{Workload: "depth", Op: "prepare+mount", Target: t.info.ID, Param: "depth", Value: float64(d)}
		for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
			var c *child
			if err := r.recorderFor(i).time(pt, func() (err error) { c, err = t.child(ctx, parent); return err }); err != nil {
				return err
			}
			if err := c.release(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// density keeps K containers' snapshots live (prepared and mounted) and, at
// each level, times creating and removing one more, and measures the space
// each live container takes on the backing filesystem.
func density(ctx context.Context, r *run, t *target) error {
	base, err := t.layer(ctx, "", func(dir string) error {
		for i := 0; i < 20; i++ {
			if err := writeFile(filepath.Join(dir, fmt.Sprintf("f%d", i)), 64*kib, int64(i)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	var live []*child
	defer func() {
		for _, c := range live {
			c.release(ctx)
		}
	}()
	used0, err := t.spaceUsed(ctx, r)
	if err != nil {
		return err
	}
	for _, k := range r.prof.Densities {
		for len(live) < k {
			c, err := t.child(ctx, base)
			if err != nil {
				return fmt.Errorf("density %d: %w", len(live)+1, err)
			}
			// A container writes a little: its own hostname and a log line.
			if err := os.WriteFile(filepath.Join(c.dir, "hostname"), []byte(c.key), 0o644); err != nil {
				return err
			}
			live = append(live, c)
		}
		used, err := t.spaceUsed(ctx, r)
		if err != nil {
			return err
		}
		r.rec.add(point{Workload: "density", Op: "space-per-container", Target: t.info.ID, Param: "containers", Value: float64(k), Unit: "bytes"}, float64(used-used0)/float64(k))
		for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
			rec := r.recorderFor(i)
			var c *child
			if err := rec.time(point{Workload: "density", Op: "create", Target: t.info.ID, Param: "containers", Value: float64(k)}, func() (err error) {
				c, err = t.child(ctx, base)
				return err
			}); err != nil {
				return err
			}
			if err := rec.time(point{Workload: "density", Op: "remove", Target: t.info.ID, Param: "containers", Value: float64(k)}, func() error {
				return c.release(ctx)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// spaceUsed is the space in use where the target keeps its data: the
// driver's own store where it reports one (drivers.SpaceReporter: zfs's
// datasets, whose data statfs of the home does not see, a dm thin-pool),
// else the filesystem of its home.
func (t *target) spaceUsed(ctx context.Context, r *run) (int64, error) {
	if s, ok := t.d.(drivers.SpaceReporter); ok {
		r.noteOnce("density-space/"+t.info.ID, fmt.Sprintf("density: %s space is what the driver reports its backing store uses (drivers.SpaceReporter), not statfs of its home", t.info.ID))
		return s.BackingUsed(ctx)
	}
	return usedBytes(t.home)
}

// usedBytes is the space in use on the filesystem holding path, after a
// sync so delayed allocation is counted.
func usedBytes(path string) (int64, error) {
	if err := mount.SyncFS(path); err != nil {
		return 0, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}
