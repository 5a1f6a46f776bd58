// Package core is the snapshot bookkeeping every layerlab driver shares: it
// wraps a driver's Backend (which creates, freezes and deletes the storage
// of one snapshot) in metadata records, so that each driver only writes
// what is particular to its filesystem.
//
// Disk work never runs inside the metadata store's one write transaction,
// so a long copy or clone on one key does not stall the others; per-key
// locks order operations on the same key. Crash consistency comes from the
// order of the steps:
//   - Prepare and View make storage first, under an id no record names,
//     then record it in one transaction: a crash before the record leaves
//     an orphan, which Open sweeps; readers never see a half-made snapshot.
//   - Commit marks the record committing (durably), freezes the storage,
//     then renames the record to committed: Open finishes a commit a crash
//     interrupted, or takes it back if the backend cannot finish it.
//   - Remove deletes the record, then the storage: a crash in between
//     leaves an orphan, swept by Open.
package core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Backend is what a driver implements for its filesystem.
type Backend interface {
	// Create makes storage for the new active or view snapshot s.
	Create(ctx context.Context, s storage.Snapshot) error
	// Mounts describes how to mount s.
	Mounts(s storage.Snapshot) ([]drivers.Mount, error)
	// Commit freezes the active snapshot s and returns the space it adds.
	Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error)
	// Usage measures the space an active or view snapshot adds.
	Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error)
	// Remove deletes the storage of snapshot id; storage already gone is
	// not an error.
	Remove(ctx context.Context, id string) error
	// IDs lists the snapshot ids that have storage.
	IDs(ctx context.Context) ([]string, error)
	// Capabilities describes the backend.
	Capabilities() drivers.Capabilities
	// Close releases the backend.
	Close() error
}

// ChangesBackend is implemented by backends that keep each snapshot's own
// changes apart from its parent's (see drivers.Differ).
type ChangesBackend interface {
	Changes(s storage.Snapshot) (drivers.Changes, error)
}

// ChangeWalkerBackend is implemented by backends that list a snapshot's
// changes natively (see drivers.ChangeWalker).
type ChangeWalkerBackend interface {
	WalkChanges(ctx context.Context, s storage.Snapshot, start func(root string) error, fn drivers.ChangeFunc) error
}

// Projects is implemented by backends that put every active snapshot in
// a quota project of its own (overlay2 on xfs with prjquota). ProjectBase
// returns the lowest id to hand out, or 0 when quotas are off.
type Projects interface {
	ProjectBase() uint32
}

// Storage is implemented by backends whose snapshots live in directories:
// Paths names what a live mount of snapshot id would use (its directory,
// its short link). Remove refuses a snapshot whose paths a mount uses, and
// the sweep leaves such orphans alone.
type Storage interface {
	Paths(id string) []string
}

// CommitUndoer is implemented by backends whose Commit changes storage in
// a way an active snapshot cannot keep (zfs makes the dataset read-only):
// UndoCommit takes that back when the commit cannot be finished.
type CommitUndoer interface {
	UndoCommit(ctx context.Context, s storage.Snapshot) error
}

// MetadataFile is the name of the metadata database inside a driver's home.
const MetadataFile = "metadata.db"

// Recovery is what Open found and did: commits it finished or took back,
// orphaned storage it swept, and what it could not do (and left).
type Recovery struct {
	Finished []string // keys whose interrupted commit was completed
	Undone   []string // keys whose interrupted commit was taken back
	Swept    []string // storage ids no record named, removed
	Failed   []error  // what could not be recovered or removed
}

// Driver implements drivers.Driver around a Backend.
type Driver struct {
	name     string
	store    *storage.Store
	backend  Backend
	locks    keyLocks
	lastID   atomic.Uint64
	projects projects
	recovery Recovery
	closed   atomic.Bool
	ops      sync.RWMutex // operations hold it shared; Close, alone (enter)
	once     sync.Once
	closeErr error
}

// CheckHome validates a driver home path: absolute, and a directory if it
// exists.
func CheckHome(name, home string) error {
	if !filepath.IsAbs(home) {
		return fmt.Errorf("%s: home %q is not an absolute path: %w", name, home, drivers.ErrInvalidArgument)
	}
	st, err := os.Stat(home)
	if err == nil && !st.IsDir() {
		return fmt.Errorf("%s: home %q is not a directory: %w", name, home, drivers.ErrInvalidArgument)
	}
	return nil
}

// Open opens the metadata under home, finishes what a crash interrupted
// and sweeps storage no record names. It takes ownership of backend: on
// error the backend is closed.
func Open(ctx context.Context, name, home string, backend Backend) (*Driver, error) {
	store, err := storage.Open(filepath.Join(home, MetadataFile))
	if err != nil {
		backend.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &Driver{name: name, store: store, backend: backend}
	// The feature probes' scratch directories (overlay's .probe-, aufs's
	// .dirperm1-, the reflink probe): a crash mid-probe leaves them.
	if err := SweepScratch(home, ".probe-", ".reflink-", ".dirperm1-"); err != nil {
		slog.WarnContext(ctx, "sweep", "driver", name, "err", err)
		d.recovery.Failed = append(d.recovery.Failed, err)
	}
	if p, ok := backend.(Projects); ok {
		d.projects.base = p.ProjectBase()
	}
	err = store.View(ctx, func(tx *storage.Tx) error {
		d.lastID.Store(tx.LastID())
		d.projects.held = tx.Projects()
		return nil
	})
	if err == nil {
		err = d.recover(ctx)
	}
	if err == nil {
		err = d.sweep(ctx)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Recovery returns what Open recovered and swept.
func (d *Driver) Recovery() Recovery { return d.recovery }

// recover finishes the commits a crash interrupted: the backend's Commit
// is run again (backends make it safe to repeat) and the record renamed;
// when that fails the commit is taken back and the snapshot stays active.
func (d *Driver) recover(ctx context.Context) error {
	var pending map[string]string
	if err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
		pending, err = tx.Committing()
		return err
	}); err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	for key, name := range pending {
		err := d.finishCommit(ctx, key)
		if err == nil {
			d.recovery.Finished = append(d.recovery.Finished, key)
			continue
		}
		err = fmt.Errorf("%s: finish the interrupted commit of %q as %q: %w", d.name, key, name, err)
		if uerr := d.undoCommit(ctx, key); uerr != nil {
			return errors.Join(err, uerr)
		}
		slog.WarnContext(ctx, "took back an interrupted commit", "driver", d.name, "key", key, "err", err)
		d.recovery.Undone = append(d.recovery.Undone, key)
		d.recovery.Failed = append(d.recovery.Failed, err)
	}
	return nil
}

// sweep removes storage that no record names: what a crash between
// making storage and recording it, or between deleting a record and its
// storage, left behind. It goes on past what it cannot remove, and never
// removes storage a mount still uses; both are logged and kept in
// Recovery.Failed.
func (d *Driver) sweep(ctx context.Context) error {
	var known map[string]bool
	err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
		known, err = tx.IDs()
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	ids, err := d.backend.IDs(ctx)
	if err != nil {
		return fmt.Errorf("%s: list storage: %w", d.name, err)
	}
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 64); err == nil && n > d.lastID.Load() {
			d.lastID.Store(n) // never hand out the id of storage that stays
		}
		if known[id] {
			continue
		}
		err := d.busy(id)
		if err == nil {
			err = d.backend.Remove(ctx, id)
		}
		if err != nil {
			err = fmt.Errorf("%s: orphaned snapshot storage %s is kept: %w", d.name, id, err)
			slog.WarnContext(ctx, "sweep", "driver", d.name, "err", err)
			d.recovery.Failed = append(d.recovery.Failed, err)
			continue
		}
		d.recovery.Swept = append(d.recovery.Swept, id)
	}
	return nil
}

// Orphans lists storage ids that no record names: none after a clean
// open, or what the sweep had to keep (Recovery.Failed says why). While
// a Prepare is under way its storage is listed too: call it when the
// driver is idle.
func (d *Driver) Orphans(ctx context.Context) ([]string, error) {
	done, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	var known map[string]bool
	if err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
		known, err = tx.IDs()
		return err
	}); err != nil {
		return nil, err
	}
	ids, err := d.backend.IDs(ctx)
	if err != nil {
		return nil, err
	}
	var orphans []string
	for _, id := range ids {
		if !known[id] {
			orphans = append(orphans, id)
		}
	}
	return orphans, nil
}

// busy returns an ErrFailedPrecondition error naming the mount point when
// a mount uses the storage of snapshot id.
func (d *Driver) busy(id string) error {
	st, ok := d.backend.(Storage)
	if !ok || d.backend.Capabilities().DeferredRemove {
		return nil
	}
	at, err := mount.InUse(st.Paths(id)...)
	if err != nil {
		return fmt.Errorf("check the mounts of snapshot %s: %w", id, err)
	}
	if at != "" {
		return fmt.Errorf("snapshot storage %s is mounted at %s: %w; unmount it first", id, at, drivers.ErrFailedPrecondition)
	}
	return nil
}

func (d *Driver) check() error {
	if d.closed.Load() {
		return fmt.Errorf("%s: %w", d.name, drivers.ErrClosed)
	}
	return nil
}

// enter admits an operation unless the driver is closed; the caller runs
// done when the operation has finished. Close waits for the operations
// admitted before it, so the backend never tears down (unmounts, on zfs)
// storage an operation is still working in. An operation must not call
// another that enters (Walk, whose callback may, does not enter).
func (d *Driver) enter() (done func(), err error) {
	d.ops.RLock()
	if err := d.check(); err != nil {
		d.ops.RUnlock()
		return nil, err
	}
	return d.ops.RUnlock, nil
}

// Capabilities implements drivers.Driver.
func (d *Driver) Capabilities() drivers.Capabilities { return d.backend.Capabilities() }

// Stat implements drivers.Snapshotter.
func (d *Driver) Stat(ctx context.Context, key string) (info drivers.Info, err error) {
	done, err := d.enter()
	if err != nil {
		return info, err
	}
	defer done()
	err = d.store.View(ctx, func(tx *storage.Tx) error {
		info, err = tx.Info(key)
		return err
	})
	return info, err
}

// Update implements drivers.Snapshotter.
func (d *Driver) Update(ctx context.Context, info drivers.Info, fieldpaths ...string) (out drivers.Info, err error) {
	done, err := d.enter()
	if err != nil {
		return out, err
	}
	defer done()
	// After a commit under way, not between its two steps.
	defer d.locks.lock([]string{info.Name})()
	err = d.store.Update(ctx, func(tx *storage.Tx) error {
		out, err = tx.Update(info, fieldpaths...)
		return err
	})
	return out, err
}

// get reads the layout of key.
func (d *Driver) get(ctx context.Context, key string) (s storage.Snapshot, err error) {
	err = d.store.View(ctx, func(tx *storage.Tx) error {
		s, err = tx.Get(key)
		return err
	})
	return s, err
}

// Usage implements drivers.Snapshotter: recorded at commit for committed
// snapshots, measured now for the others, under the key's read lock so a
// Remove cannot pull the storage away mid-walk.
func (d *Driver) Usage(ctx context.Context, key string) (drivers.Usage, error) {
	done, err := d.enter()
	if err != nil {
		return drivers.Usage{}, err
	}
	defer done()
	defer d.locks.lock(nil, key)()
	var (
		s         storage.Snapshot
		u         drivers.Usage
		committed bool
	)
	err = d.store.View(ctx, func(tx *storage.Tx) (err error) {
		if u, committed, err = tx.CommittedUsage(key); err != nil || committed {
			return err
		}
		s, err = tx.Get(key)
		return err
	})
	if err != nil || committed {
		return u, err
	}
	return d.backend.Usage(ctx, s)
}

// Mounts implements drivers.Snapshotter.
func (d *Driver) Mounts(ctx context.Context, key string) ([]drivers.Mount, error) {
	done, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	defer d.locks.lock(nil, key)()
	s, err := d.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if s.Kind == drivers.KindCommitted {
		return nil, fmt.Errorf("mounts of %q: committed snapshots are not mounted; prepare or view a child: %w", key, drivers.ErrFailedPrecondition)
	}
	return d.backend.Mounts(s)
}

// Changes implements drivers.Differ for the backends that can.
func (d *Driver) Changes(ctx context.Context, key string) (drivers.Changes, error) {
	done, err := d.enter()
	if err != nil {
		return drivers.Changes{}, err
	}
	defer done()
	cb, ok := d.backend.(ChangesBackend)
	if !ok {
		return drivers.Changes{}, fmt.Errorf("%s keeps no per-snapshot change record; compare mounted views instead: %w", d.name, drivers.ErrNotImplemented)
	}
	defer d.locks.lock(nil, key)()
	s, err := d.get(ctx, key)
	if err != nil {
		return drivers.Changes{}, err
	}
	return cb.Changes(s)
}

// WalkChanges implements drivers.ChangeWalker for the backends that can.
func (d *Driver) WalkChanges(ctx context.Context, key string, start func(root string) error, fn drivers.ChangeFunc) error {
	done, err := d.enter()
	if err != nil {
		return err
	}
	defer done()
	wb, ok := d.backend.(ChangeWalkerBackend)
	if !ok {
		return fmt.Errorf("%s cannot list a snapshot's changes natively; compare mounted views instead: %w", d.name, drivers.ErrNotImplemented)
	}
	defer d.locks.lock(nil, key)()
	s, err := d.get(ctx, key)
	if err != nil {
		return err
	}
	return wb.WalkChanges(ctx, s, start, fn)
}

// Prepare implements drivers.Snapshotter.
func (d *Driver) Prepare(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return d.create(ctx, drivers.KindActive, key, parent, opts)
}

// View implements drivers.Snapshotter.
func (d *Driver) View(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return d.create(ctx, drivers.KindView, key, parent, opts)
}

// create makes storage under a new id outside any transaction, then
// records it; a failure at any step removes what the earlier ones made.
func (d *Driver) create(ctx context.Context, kind drivers.Kind, key, parent string, opts []drivers.Opt) (_ []drivers.Mount, err error) {
	done, err := d.enter()
	if err != nil {
		return nil, err
	}
	defer done()
	defer d.locks.lock([]string{key}, parent)()
	var s storage.Snapshot
	if err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
		s, err = tx.Plan(key, parent, kind, opts...)
		return err
	}); err != nil {
		return nil, err
	}
	s.ID = strconv.FormatUint(d.lastID.Add(1), 10)
	if kind == drivers.KindActive && d.projects.base > 0 {
		if s.Project, err = d.projects.take(); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				d.projects.release(s.Project)
			}
		}()
	}
	Step(ctx, "create:planned")
	if err := d.backend.Create(ctx, s); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: create storage for %q: %w", d.name, key, err), d.backend.Remove(ctx, s.ID))
	}
	Step(ctx, "create:storage")
	if err := d.store.Update(ctx, func(tx *storage.Tx) error { return tx.Insert(key, s) }); err != nil {
		return nil, errors.Join(err, d.backend.Remove(ctx, s.ID))
	}
	Step(ctx, "create:recorded")
	ms, err := d.backend.Mounts(s)
	if err != nil {
		err = fmt.Errorf("%s: mounts of the new snapshot %q (taken back): %w", d.name, key, err)
		rerr := d.store.Update(ctx, func(tx *storage.Tx) error { _, _, err := tx.Remove(key); return err })
		if rerr == nil {
			rerr = d.backend.Remove(ctx, s.ID)
		}
		return nil, errors.Join(err, rerr)
	}
	return ms, nil
}

// Commit implements drivers.Snapshotter in two durable steps around the
// backend's work (see the package comment).
func (d *Driver) Commit(ctx context.Context, name, key string, opts ...drivers.Opt) error {
	done, err := d.enter()
	if err != nil {
		return err
	}
	defer done()
	defer d.locks.lock([]string{key, name})()
	if err := d.store.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.BeginCommit(key, name, opts...)
		return err
	}); err != nil {
		return err
	}
	Step(ctx, "commit:begun")
	if err := d.finishCommit(ctx, key); err != nil {
		err = fmt.Errorf("%s: commit %q: %w", d.name, key, err)
		return errors.Join(err, d.undoCommit(ctx, key))
	}
	return nil
}

// finishCommit runs the backend's Commit of the snapshot key, marked
// committing, and records it committed.
func (d *Driver) finishCommit(ctx context.Context, key string) error {
	s, err := d.get(ctx, key)
	if err != nil {
		return err
	}
	u, err := d.backend.Commit(ctx, s)
	if err != nil {
		return err
	}
	Step(ctx, "commit:frozen")
	err = d.store.Update(ctx, func(tx *storage.Tx) error {
		_, err := tx.FinishCommit(key, u)
		return err
	})
	if err == nil {
		Step(ctx, "commit:recorded")
	}
	return err
}

// undoCommit takes back a begun commit: the backend's changes, then the
// mark on the record.
func (d *Driver) undoCommit(ctx context.Context, key string) error {
	var uerr error
	if u, ok := d.backend.(CommitUndoer); ok {
		s, err := d.get(ctx, key)
		if err != nil {
			return err
		}
		uerr = u.UndoCommit(ctx, s)
	}
	return errors.Join(uerr, d.store.Update(ctx, func(tx *storage.Tx) error { return tx.AbortCommit(key) }))
}

// Remove implements drivers.Snapshotter. A snapshot a mount still uses is
// refused (unless the backend removes devices deferred, and says so in
// its Capabilities).
func (d *Driver) Remove(ctx context.Context, key string) error {
	done, err := d.enter()
	if err != nil {
		return err
	}
	defer done()
	defer d.locks.lock([]string{key})()
	s, err := d.get(ctx, key)
	if err != nil {
		return err
	}
	if err := d.busy(s.ID); err != nil {
		return fmt.Errorf("%s: remove %q: %w", d.name, key, err)
	}
	Step(ctx, "remove:checked")
	var id string
	if err := d.store.Update(ctx, func(tx *storage.Tx) (err error) {
		id, _, err = tx.Remove(key)
		return err
	}); err != nil {
		return err
	}
	d.projects.release(s.Project)
	Step(ctx, "remove:recorded")
	if err := d.backend.Remove(ctx, id); err != nil {
		return fmt.Errorf("%s: %q is removed from the metadata but its storage is not (it is swept on the next open): %w", d.name, key, err)
	}
	Step(ctx, "remove:storage")
	return nil
}

// Walk implements drivers.Snapshotter: the store applies filters while it
// reads, and fn runs outside the metadata transaction, so it may call
// back into the driver.
func (d *Driver) Walk(ctx context.Context, fn drivers.WalkFunc, filters ...drivers.Filter) error {
	if err := d.check(); err != nil {
		return err
	}
	var infos []drivers.Info
	err := d.store.View(ctx, func(tx *storage.Tx) error {
		return tx.Walk(filters, func(info drivers.Info) error {
			infos = append(infos, info)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(ctx, info); err != nil {
			return err
		}
	}
	return nil
}

// Close implements drivers.Snapshotter; later calls return the first
// call's result.
func (d *Driver) Close() error {
	d.once.Do(func() {
		d.ops.Lock() // the operations under way finish first
		d.closed.Store(true)
		d.ops.Unlock()
		d.closeErr = errors.Join(d.store.Close(), d.backend.Close())
	})
	return d.closeErr
}
