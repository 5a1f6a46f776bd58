package overlay

import (
	"context"
	"fmt"
	"os"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
)

// OverlayFactory returns the registry entry for the classic overlay driver.
func OverlayFactory() drivers.Factory {
	return drivers.Factory{
		Name:         NameOverlay,
		Summary:      "classic overlayfs: one lowerdir, each committed layer a complete tree hardlinked to its parent's",
		Capabilities: declared(false),
		Probe:        func(home string) drivers.Probe { return Probe(NameOverlay, home) },
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(NewOverlay(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := parseOptions(NameOverlay, o); return err },
	}
}

type classic struct {
	dirs     core.Dirs
	caps     drivers.Capabilities
	base     []string // options every overlay mount gets, read once at open
	volatile bool     // active mounts skip syncs (see options.go)
}

// NewOverlay opens a classic overlay driver with its state under home. Its
// one option, volatile, is described in options.go.
func NewOverlay(ctx context.Context, home string, opts drivers.Options) (*core.Driver, error) {
	dirs, o, err := setup(NameOverlay, home, opts)
	if err != nil {
		return nil, err
	}
	caps, err := capabilitiesAt(false, home)
	if err != nil {
		return nil, wrap(NameOverlay, err)
	}
	b := &classic{dirs: dirs, caps: withVolatile(caps, o.volatile), base: baseOptions(), volatile: o.volatile}
	return core.Open(ctx, NameOverlay, home, b)
}

func (b *classic) Create(ctx context.Context, s storage.Snapshot) error {
	sub := []string{"fs"}
	if s.Kind == drivers.KindActive && len(s.ParentIDs) > 0 {
		sub = append(sub, "work")
	}
	if err := b.dirs.Mkdir(s.ID, sub...); err != nil {
		b.dirs.Remove(s.ID)
		return err
	}
	return nil
}

func (b *classic) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	if len(s.ParentIDs) == 0 {
		return core.Bind(b.dirs.Path(s.ID, "fs"), s.Kind == drivers.KindView), nil
	}
	// The parent's root is complete, so one lowerdir is the whole image.
	lower := b.dirs.Path(s.ParentIDs[0], "root")
	if s.Kind == drivers.KindView {
		return core.Bind(lower, true), nil
	}
	if b.volatile {
		if err := readyVolatile(NameOverlay, b.dirs, s.ID); err != nil {
			return nil, err
		}
	}
	return []drivers.Mount{overlayMount(b.base, []string{lower}, b.dirs.Path(s.ID, "fs"), b.dirs.Path(s.ID, "work"), b.volatile)}, nil
}

// Commit builds the layer's complete tree: a hardlinked copy of the
// parent's tree with the upper directory's changes applied. The upper
// directory stays as it is (its files are linked, not moved), so a failed
// commit leaves the active snapshot intact.
func (b *classic) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	if err := syncVolatile(b.volatile, b.dirs, s); err != nil {
		return drivers.Usage{}, err
	}
	root := b.dirs.Path(s.ID, "root")
	if err := os.RemoveAll(root); err != nil { // a previous failed commit
		return drivers.Usage{}, err
	}
	err := func() error {
		if len(s.ParentIDs) == 0 {
			return os.Mkdir(root, 0o755)
		}
		return linkTree(ctx, b.dirs.Path(s.ParentIDs[0], "root"), root)
	}()
	if err == nil {
		err = applyUpper(ctx, b.dirs.Path(s.ID, "fs"), root)
	}
	if err != nil {
		os.RemoveAll(root)
		return drivers.Usage{}, fmt.Errorf("build layer tree: %w", err)
	}
	return usage(ctx, b.dirs, s)
}

func (b *classic) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return usage(ctx, b.dirs, s)
}

func (b *classic) Remove(ctx context.Context, id string) error { return b.dirs.Remove(id) }

func (b *classic) Paths(id string) []string { return b.dirs.Paths(id) }

func (b *classic) IDs(ctx context.Context) ([]string, error) { return b.dirs.IDs(ctx) }

func (b *classic) Capabilities() drivers.Capabilities { return b.caps }

func (b *classic) Close() error { return nil }

// Changes implements core.ChangesBackend: fs is the upper directory the
// snapshot was written through; its commit links it into a complete tree
// but leaves it as it was. A view's fs stays empty: it changes nothing.
func (b *classic) Changes(s storage.Snapshot) (drivers.Changes, error) {
	var lowers []string
	if len(s.ParentIDs) > 0 {
		lowers = []string{b.dirs.Path(s.ParentIDs[0], "root")}
	}
	return drivers.Changes{Format: drivers.ChangesOverlay, Dir: b.dirs.Path(s.ID, "fs"), Lowers: lowers}, nil
}
