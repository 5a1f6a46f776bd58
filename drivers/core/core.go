// Package core is the snapshot bookkeeping every layerlab driver shares: it
// wraps a driver's Backend (which creates, freezes and deletes the storage
// of one snapshot) in metadata transactions, so that each driver only
// writes what is particular to its filesystem.
//
// Ordering, for crash consistency: storage is created inside the metadata
// transaction that records it, so a crash before the commit leaves storage
// that no record names; Open sweeps such orphans. Remove deletes the record
// first and the storage after, so a crash in between leaves an orphan too,
// never a record without storage.
package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/layerlab/layerlab/drivers"
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

// Projects is implemented by backends that put every active snapshot in
// a quota project of its own (overlay2 on xfs with prjquota). ProjectBase
// returns the lowest id to hand out, or 0 when quotas are off.
type Projects interface {
	ProjectBase() uint32
}

// MetadataFile is the name of the metadata database inside a driver's home.
const MetadataFile = "metadata.db"

// Driver implements drivers.Driver around a Backend.
type Driver struct {
	name     string
	store    *storage.Store
	backend  Backend
	closed   atomic.Bool
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

// Open opens the metadata under home and sweeps storage no record names.
// It takes ownership of backend: on error the backend is closed.
func Open(ctx context.Context, name, home string, backend Backend) (*Driver, error) {
	store, err := storage.Open(filepath.Join(home, MetadataFile))
	if err != nil {
		backend.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &Driver{name: name, store: store, backend: backend}
	if err := d.sweep(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// sweep removes storage that no record names: what a crash between
// creating storage and committing its record, or between deleting a record
// and its storage, left behind.
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
		if !known[id] {
			if err := d.backend.Remove(ctx, id); err != nil {
				return fmt.Errorf("%s: sweep orphaned snapshot %s: %w", d.name, id, err)
			}
		}
	}
	return nil
}

func (d *Driver) check() error {
	if d.closed.Load() {
		return fmt.Errorf("%s: %w", d.name, drivers.ErrClosed)
	}
	return nil
}

// Capabilities implements drivers.Driver.
func (d *Driver) Capabilities() drivers.Capabilities { return d.backend.Capabilities() }

// Stat implements drivers.Snapshotter.
func (d *Driver) Stat(ctx context.Context, key string) (info drivers.Info, err error) {
	if err := d.check(); err != nil {
		return info, err
	}
	err = d.store.View(ctx, func(tx *storage.Tx) error {
		info, err = tx.Info(key)
		return err
	})
	return info, err
}

// Update implements drivers.Snapshotter.
func (d *Driver) Update(ctx context.Context, info drivers.Info, fieldpaths ...string) (out drivers.Info, err error) {
	if err := d.check(); err != nil {
		return out, err
	}
	err = d.store.Update(ctx, func(tx *storage.Tx) error {
		out, err = tx.Update(info, fieldpaths...)
		return err
	})
	return out, err
}

// Usage implements drivers.Snapshotter: recorded at commit for committed
// snapshots, measured now for the others.
func (d *Driver) Usage(ctx context.Context, key string) (drivers.Usage, error) {
	if err := d.check(); err != nil {
		return drivers.Usage{}, err
	}
	var (
		s         storage.Snapshot
		u         drivers.Usage
		committed bool
	)
	err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
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
	if err := d.check(); err != nil {
		return nil, err
	}
	var s storage.Snapshot
	err := d.store.View(ctx, func(tx *storage.Tx) (err error) {
		s, err = tx.Get(key)
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.Kind == drivers.KindCommitted {
		return nil, fmt.Errorf("mounts of %q: committed snapshots are not mounted; prepare or view a child: %w", key, drivers.ErrFailedPrecondition)
	}
	return d.backend.Mounts(s)
}

// Prepare implements drivers.Snapshotter.
func (d *Driver) Prepare(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return d.create(ctx, drivers.KindActive, key, parent, opts)
}

// View implements drivers.Snapshotter.
func (d *Driver) View(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return d.create(ctx, drivers.KindView, key, parent, opts)
}

func (d *Driver) create(ctx context.Context, kind drivers.Kind, key, parent string, opts []drivers.Opt) ([]drivers.Mount, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	var (
		s       storage.Snapshot
		created bool
	)
	err := d.store.Update(ctx, func(tx *storage.Tx) (err error) {
		if s, err = tx.Create(key, parent, kind, opts...); err != nil {
			return err
		}
		if p, ok := d.backend.(Projects); ok && kind == drivers.KindActive && p.ProjectBase() > 0 {
			if s.Project, err = tx.AssignProject(key, p.ProjectBase()); err != nil {
				return err
			}
		}
		if err = d.backend.Create(ctx, s); err != nil {
			return fmt.Errorf("%s: create storage for %q: %w", d.name, key, err)
		}
		created = true
		return nil
	})
	if err != nil {
		if created { // the transaction failed after the storage was made
			err = errors.Join(err, d.backend.Remove(ctx, s.ID))
		}
		return nil, err
	}
	return d.backend.Mounts(s)
}

// Commit implements drivers.Snapshotter.
func (d *Driver) Commit(ctx context.Context, name, key string, opts ...drivers.Opt) error {
	if err := d.check(); err != nil {
		return err
	}
	return d.store.Update(ctx, func(tx *storage.Tx) error {
		s, err := tx.Get(key)
		if err != nil {
			return err
		}
		if s.Kind != drivers.KindActive {
			return fmt.Errorf("commit %q: snapshot is a %s, only active snapshots can be committed: %w", key, s.Kind, drivers.ErrFailedPrecondition)
		}
		// Refuse a bad or taken name before the backend does any work it
		// would have to undo.
		if err := storage.ValidKey("commit name", name); err != nil {
			return err
		}
		if _, err := tx.Info(name); err == nil {
			return fmt.Errorf("commit %q as %q: %w", key, name, drivers.ErrAlreadyExists)
		}
		u, err := d.backend.Commit(ctx, s)
		if err != nil {
			return fmt.Errorf("%s: commit %q: %w", d.name, key, err)
		}
		_, err = tx.Commit(key, name, u, opts...)
		return err
	})
}

// Remove implements drivers.Snapshotter.
func (d *Driver) Remove(ctx context.Context, key string) error {
	if err := d.check(); err != nil {
		return err
	}
	var id string
	err := d.store.Update(ctx, func(tx *storage.Tx) (err error) {
		id, _, err = tx.Remove(key)
		return err
	})
	if err != nil {
		return err
	}
	if err := d.backend.Remove(ctx, id); err != nil {
		return fmt.Errorf("%s: %q is removed from the metadata but its storage is not (it is swept on the next open): %w", d.name, key, err)
	}
	return nil
}

// Walk implements drivers.Snapshotter. fn runs outside the metadata
// transaction, so it may call back into the driver.
func (d *Driver) Walk(ctx context.Context, fn drivers.WalkFunc, filters ...drivers.Filter) error {
	if err := d.check(); err != nil {
		return err
	}
	var infos []drivers.Info
	err := d.store.View(ctx, func(tx *storage.Tx) error {
		return tx.Walk(func(info drivers.Info) error {
			if !drivers.MatchAny(info, filters) {
				return nil
			}
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
		d.closed.Store(true)
		d.closeErr = errors.Join(d.store.Close(), d.backend.Close())
	})
	return d.closeErr
}
