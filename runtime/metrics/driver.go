package metrics

import (
	"context"
	"fmt"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// Instrument returns d timing its Prepare, View, Commit, Remove and
// Mounts calls as driver name. The optional interfaces the runtime asks
// for (drivers.Differ and drivers.ChangeWalker, in layer.DiffSnapshot)
// stay reachable: the wrapper implements both, passing the call on, or
// answering drivers.ErrNotImplemented as a driver without it must (the
// differ then compares mounted views); Unwrap returns d for any other
// type assertion (drivers.SpaceReporter, which the runtime does not ask).
func (m *Metrics) Instrument(name string, d drivers.Driver) drivers.Driver {
	return &driver{Driver: d, name: name, m: m}
}

// Unwrap returns the driver Instrument wrapped, or d itself.
func Unwrap(d drivers.Driver) drivers.Driver {
	if w, ok := d.(*driver); ok {
		return w.Driver
	}
	return d
}

type driver struct {
	drivers.Driver
	name string
	m    *Metrics
}

var (
	_ drivers.Differ       = (*driver)(nil)
	_ drivers.ChangeWalker = (*driver)(nil)
)

// timed starts timing op; the func it returns records the time and
// *err, so a deferred call sees the named result the call returned.
func (d *driver) timed(op string, err *error) func() {
	start := time.Now()
	return func() { d.m.Observe(d.name, op, time.Since(start).Seconds(), *err) }
}

func (d *driver) Prepare(ctx context.Context, key, parent string, opts ...drivers.Opt) (_ []drivers.Mount, err error) {
	defer d.timed("prepare", &err)()
	return d.Driver.Prepare(ctx, key, parent, opts...)
}

func (d *driver) View(ctx context.Context, key, parent string, opts ...drivers.Opt) (_ []drivers.Mount, err error) {
	defer d.timed("view", &err)()
	return d.Driver.View(ctx, key, parent, opts...)
}

func (d *driver) Commit(ctx context.Context, name, key string, opts ...drivers.Opt) (err error) {
	defer d.timed("commit", &err)()
	return d.Driver.Commit(ctx, name, key, opts...)
}

func (d *driver) Remove(ctx context.Context, key string) (err error) {
	defer d.timed("remove", &err)()
	return d.Driver.Remove(ctx, key)
}

func (d *driver) Mounts(ctx context.Context, key string) (_ []drivers.Mount, err error) {
	defer d.timed("mounts", &err)()
	return d.Driver.Mounts(ctx, key)
}

func (d *driver) Changes(ctx context.Context, key string) (drivers.Changes, error) {
	if df, ok := d.Driver.(drivers.Differ); ok {
		return df.Changes(ctx, key)
	}
	return drivers.Changes{}, fmt.Errorf("%s keeps no record of a snapshot's changes: %w", d.name, drivers.ErrNotImplemented)
}

func (d *driver) WalkChanges(ctx context.Context, key string, start func(root string) error, fn drivers.ChangeFunc) error {
	if cw, ok := d.Driver.(drivers.ChangeWalker); ok {
		return cw.WalkChanges(ctx, key, start, fn)
	}
	return fmt.Errorf("%s cannot list a snapshot's changes: %w", d.name, drivers.ErrNotImplemented)
}
