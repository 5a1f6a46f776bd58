package overlay

import (
	"context"
	"fmt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
	"github.com/layerlab/layerlab/quota"
)

// Overlay2Factory returns the registry entry for overlay2.
func Overlay2Factory() drivers.Factory {
	return drivers.Factory{
		Name:         NameOverlay2,
		Summary:      "overlayfs with the ancestors stacked as multiple lowerdirs (dockerd's default)",
		Capabilities: declared(true),
		Probe:        func(home string) drivers.Probe { return Probe(NameOverlay2, home) },
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(NewOverlay2(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := parseOptions(NameOverlay2, o); return err },
	}
}

type overlay2 struct {
	dirs  core.Dirs
	links core.Links // home/l
	caps  drivers.Capabilities
	base  []string // options every overlay mount gets, read once at open
	// quota is set when home is on xfs with project quota enforced; every
	// active snapshot then gets a project id from projectBase up.
	quota       *quota.XFS
	projectBase uint32
	size        int64 // default limit from the size option, 0 for none
	volatile    bool  // active mounts skip syncs (see options.go)
}

// NewOverlay2 opens an overlay2 driver with its state under home.
func NewOverlay2(ctx context.Context, home string, opts drivers.Options) (*core.Driver, error) {
	dirs, o, err := setup(NameOverlay2, home, opts)
	if err != nil {
		return nil, err
	}
	b := &overlay2{dirs: dirs, size: o.size, volatile: o.volatile}
	if err := b.setupQuota(home); err != nil {
		return nil, err
	}
	if b.links, err = core.NewLinks(home); err != nil {
		return nil, wrap(NameOverlay2, err)
	}
	if err := checkMultipleLowers(home); err != nil {
		return nil, wrap(NameOverlay2, err)
	}
	if b.caps, err = capabilitiesAt(true, home); err != nil {
		return nil, wrap(NameOverlay2, err)
	}
	b.caps = withVolatile(b.caps, b.volatile)
	b.base = baseOptions()
	if b.quota != nil {
		b.caps.Quota, b.caps.QuotaNote = true, b.quota.Mechanism()
	}
	return core.Open(ctx, NameOverlay2, home, b)
}

// setupQuota turns project quota on when the backing filesystem enforces
// it. Without it a size option is refused with the reason.
func (b *overlay2) setupQuota(home string) error {
	x, err := quota.NewXFS(home)
	if err != nil {
		if b.size > 0 {
			return fmt.Errorf("%s on %s: size=%d: %w: %w", NameOverlay2, core.FSType(home), b.size, drivers.ErrInvalidArgument, err)
		}
		return nil
	}
	if b.projectBase, err = quota.HomeProject(home); err != nil {
		return wrap(NameOverlay2, err)
	}
	b.quota = x
	return nil
}

// ProjectBase implements core.Projects.
func (b *overlay2) ProjectBase() uint32 { return b.projectBase }

// limit applies the snapshot's size limit to its upper directory. Every
// active snapshot on a quota filesystem is put in its project, also
// without a limit, so a reused id never carries a stale limit.
func (b *overlay2) limit(ctx context.Context, s storage.Snapshot) error {
	size, err := drivers.SizeOf(s.Labels, b.size)
	if err != nil {
		return err
	}
	if s.Project == 0 {
		if size > 0 {
			return fmt.Errorf("%s: a size limit needs project quota: %w: overlay2 on %s: project quota needs xfs mounted with prjquota", NameOverlay2, drivers.ErrInvalidArgument, core.FSType(b.links.Dir))
		}
		return nil
	}
	t := quota.Target{Path: b.dirs.Path(s.ID), Project: s.Project}
	if size == 0 {
		if err := quota.SetProject(t.Path, t.Project); err != nil {
			return err
		}
		return b.quota.Clear(ctx, t)
	}
	return b.quota.Set(ctx, t, size)
}

func (b *overlay2) Create(ctx context.Context, s storage.Snapshot) error {
	sub := []string{"fs"}
	if s.Kind == drivers.KindActive && len(s.ParentIDs) > 0 {
		sub = append(sub, "work")
	}
	// The project goes on the snapshot's directory before fs and work
	// exist, so both inherit it: xfs refuses (EXDEV) to rename across
	// projects, and overlay copies up by renaming from work into fs.
	err := b.dirs.Mkdir(s.ID)
	if err == nil && s.Kind == drivers.KindActive {
		err = b.limit(ctx, s)
	}
	if err == nil {
		err = b.dirs.Sub(s.ID, sub...)
	}
	if err != nil {
		b.dirs.Remove(s.ID)
		return err
	}
	// Views never become parents; only active snapshots need a link.
	if s.Kind == drivers.KindActive {
		if err := b.links.Make(s.ID); err != nil {
			b.Remove(ctx, s.ID)
			return err
		}
	}
	return nil
}

func (b *overlay2) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	if ms, ok := b.dirs.UnionShortcut(s); ok {
		return ms, nil
	}
	if len(s.ParentIDs) > MaxDepth {
		return nil, fmt.Errorf("%s: %d parent layers, the kernel stacks at most %d: %w", NameOverlay2, len(s.ParentIDs), MaxDepth, drivers.ErrFailedPrecondition)
	}
	lowers := make([]string, len(s.ParentIDs))
	for i, id := range s.ParentIDs {
		lowers[i] = b.links.Path(id)
	}
	if s.Kind == drivers.KindView {
		return []drivers.Mount{overlayMount(b.base, lowers, "", "", false)}, nil
	}
	if b.volatile {
		if err := readyVolatile(NameOverlay2, b.dirs, s.ID); err != nil {
			return nil, err
		}
	}
	return []drivers.Mount{overlayMount(b.base, lowers, b.dirs.Path(s.ID, "fs"), b.dirs.Path(s.ID, "work"), b.volatile)}, nil
}

// Commit needs no data movement: the upper directory becomes a lower.
func (b *overlay2) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	if err := syncVolatile(b.volatile, b.dirs, s); err != nil {
		return drivers.Usage{}, err
	}
	return usage(ctx, b.dirs, s)
}

func (b *overlay2) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return usage(ctx, b.dirs, s)
}

func (b *overlay2) Remove(ctx context.Context, id string) error {
	if err := b.links.Remove(id); err != nil {
		return err
	}
	return b.dirs.Remove(id)
}

// Paths includes the short link: overlay's options name lowers by it.
func (b *overlay2) Paths(id string) []string { return append(b.dirs.Paths(id), b.links.Path(id)) }

func (b *overlay2) IDs(ctx context.Context) ([]string, error) { return b.dirs.IDs(ctx) }

func (b *overlay2) Capabilities() drivers.Capabilities { return b.caps }

func (b *overlay2) Close() error { return nil }

// Changes implements core.ChangesBackend: the snapshot's fs directory is
// its overlay upper, whatever its kind (a base snapshot's holds its whole
// tree, which is all it changed).
func (b *overlay2) Changes(s storage.Snapshot) (drivers.Changes, error) {
	lowers := make([]string, len(s.ParentIDs))
	for i, id := range s.ParentIDs {
		lowers[i] = b.dirs.Path(id, "fs")
	}
	return drivers.Changes{Format: drivers.ChangesOverlay, Dir: b.dirs.Path(s.ID, "fs"), Lowers: lowers}, nil
}
