// Package containerd adapts a layerlab snapshotter to containerd's
// snapshots.Snapshotter: containerd's own snapshotter test suite checks
// layerlab's drivers through it (drivertest runs it against every
// driver), and `layerlab snapshotter serve` serves a driver through it as
// a containerd proxy snapshotter plugin. It also reads the labels
// containerd sends (labels.go). Only drivertest and the layerlab command
// import it; the core interface knows nothing of containerd.
package containerd

import (
	"context"
	"errors"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/errdefs"

	"github.com/layerlab/layerlab/drivers"
)

// Snapshotter is a layerlab snapshotter seen as a containerd one.
type Snapshotter struct {
	S drivers.Snapshotter
}

var _ snapshots.Snapshotter = Snapshotter{}

// New adapts s.
func New(s drivers.Snapshotter) Snapshotter { return Snapshotter{S: s} }

// mapped keeps layerlab's message and adds containerd's error class.
type mapped struct{ err, class error }

func (m mapped) Error() string   { return m.err.Error() }
func (m mapped) Unwrap() []error { return []error{m.err, m.class} }

// Err maps layerlab's sentinel errors onto containerd's errdefs.
func Err(err error) error {
	if err == nil {
		return nil
	}
	for _, pair := range [][2]error{
		{drivers.ErrNotFound, errdefs.ErrNotFound},
		{drivers.ErrAlreadyExists, errdefs.ErrAlreadyExists},
		{drivers.ErrInvalidArgument, errdefs.ErrInvalidArgument},
		{drivers.ErrFailedPrecondition, errdefs.ErrFailedPrecondition},
		{drivers.ErrUnavailable, errdefs.ErrUnavailable},
		{drivers.ErrNotImplemented, errdefs.ErrNotImplemented},
		{drivers.ErrClosed, errdefs.ErrUnavailable},
	} {
		if errors.Is(err, pair[0]) {
			return mapped{err, pair[1]}
		}
	}
	return err
}

func toInfo(i drivers.Info) snapshots.Info {
	return snapshots.Info{Kind: snapshots.Kind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels, Created: i.Created, Updated: i.Updated}
}

func fromInfo(i snapshots.Info) drivers.Info {
	return drivers.Info{Kind: drivers.Kind(i.Kind), Name: i.Name, Parent: i.Parent, Labels: i.Labels, Created: i.Created, Updated: i.Updated}
}

func toMounts(ms []drivers.Mount) []mount.Mount {
	out := make([]mount.Mount, len(ms))
	for i, m := range ms {
		out[i] = mount.Mount{Type: m.Type, Source: m.Source, Options: m.Options}
	}
	return out
}

// labelsOf applies containerd's options to an empty Info and returns the
// labels they set.
func labelsOf(os []snapshots.Opt) (map[string]string, error) {
	var info snapshots.Info
	for _, o := range os {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	return info.Labels, nil
}

// opts carries the labels containerd's options set over unchanged.
func opts(os []snapshots.Opt) ([]drivers.Opt, error) {
	labels, err := labelsOf(os)
	if err != nil {
		return nil, err
	}
	return []drivers.Opt{drivers.WithLabels(labels)}, nil
}

func (a Snapshotter) Stat(ctx context.Context, key string) (snapshots.Info, error) {
	i, err := a.S.Stat(ctx, key)
	return toInfo(i), Err(err)
}

func (a Snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (snapshots.Info, error) {
	i, err := a.S.Update(ctx, fromInfo(info), fieldpaths...)
	return toInfo(i), Err(err)
}

func (a Snapshotter) Usage(ctx context.Context, key string) (snapshots.Usage, error) {
	u, err := a.S.Usage(ctx, key)
	return snapshots.Usage{Size: u.Size, Inodes: u.Inodes}, Err(err)
}

func (a Snapshotter) Mounts(ctx context.Context, key string) ([]mount.Mount, error) {
	m, err := a.S.Mounts(ctx, key)
	return toMounts(m), Err(err)
}

// Prepare honours the labels containerd sends (labels.go): a size label
// becomes the driver's quota, and a snapshot.ref the driver already holds
// on the same parent is answered with AlreadyExists so containerd reuses
// it.
func (a Snapshotter) Prepare(ctx context.Context, key, parent string, o ...snapshots.Opt) ([]mount.Mount, error) {
	labels, err := labelsOf(o)
	if err != nil {
		return nil, err
	}
	if labels, err = a.activeLabels(labels); err != nil {
		return nil, Err(err)
	}
	if err := a.existingRef(ctx, parent, labels); err != nil {
		return nil, err
	}
	m, err := a.S.Prepare(ctx, key, parent, drivers.WithLabels(labels))
	return toMounts(m), Err(err)
}

func (a Snapshotter) View(ctx context.Context, key, parent string, o ...snapshots.Opt) ([]mount.Mount, error) {
	lo, err := opts(o)
	if err != nil {
		return nil, err
	}
	m, err := a.S.View(ctx, key, parent, lo...)
	return toMounts(m), Err(err)
}

func (a Snapshotter) Commit(ctx context.Context, name, key string, o ...snapshots.Opt) error {
	lo, err := opts(o)
	if err != nil {
		return err
	}
	return Err(a.S.Commit(ctx, name, key, lo...))
}

func (a Snapshotter) Remove(ctx context.Context, key string) error {
	return Err(a.S.Remove(ctx, key))
}

// Walk applies containerd's filter syntax (kind==active, labels."x"==y,
// parent!="", name~=...; several strings match any of them). The strings
// that are conjunctions of equalities go to the driver as
// drivers.Filters, which its store applies while reading (storeFilters);
// containerd's own filter is then applied to every snapshot that comes
// back, so what cannot be translated is still matched exactly.
func (a Snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, fs ...string) error {
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return err
	}
	return Err(a.S.Walk(ctx, func(ctx context.Context, i drivers.Info) error {
		info := toInfo(i)
		if !filter.Match(adaptor(info)) {
			return nil
		}
		return fn(ctx, info)
	}, storeFilters(fs)...))
}

func (a Snapshotter) Close() error { return Err(a.S.Close()) }

func adaptor(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "kind":
			return drivers.Kind(info.Kind).String(), true
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "labels":
			if len(fieldpath) < 2 {
				return "", false
			}
			v, ok := info.Labels[joinPath(fieldpath[1:])]
			return v, ok
		}
		return "", false
	})
}

func joinPath(p []string) string {
	s := p[0]
	for _, e := range p[1:] {
		s += "." + e
	}
	return s
}
