package drivers

import (
	"context"
	"os"
)

// ChangesOverlay is the format of an overlay upper directory: the
// snapshot's own files as they are, deletions as whiteouts (character
// devices 0/0 or the trusted.overlay.whiteout attribute) and replaced
// directories marked trusted.overlay.opaque=y.
const ChangesOverlay = "overlay"

// Changes says where a driver keeps what one snapshot changed on top of
// its parent, so a differ can read that instead of comparing two trees.
// The paths are the driver's own storage: read them only, and only while
// the snapshot exists and is not being committed.
type Changes struct {
	// Format names how Dir records the changes (ChangesOverlay).
	Format string
	// Dir holds the changes.
	Dir string
	// Lowers are the parent layers' directories, topmost first; a differ
	// reads them only for data Dir does not hold (overlay metacopy).
	Lowers []string
}

// Differ is implemented by drivers that can say where a snapshot's own
// changes are. Changes wraps ErrNotImplemented when this driver (or this
// snapshot) has no such record; the caller then compares mounted views,
// which works on every driver (layer.DiffSnapshot does both).
type Differ interface {
	Changes(ctx context.Context, key string) (Changes, error)
}

// ChangeKind says what happened to a path.
type ChangeKind int

// The kinds of change a ChangeWalker reports.
const (
	ChangeAdd ChangeKind = iota + 1
	ChangeModify
	ChangeDelete
)

// ChangeFunc receives one change: its kind, the path with a leading "/"
// relative to the walker's root, and the entry's FileInfo (nil for a
// deletion).
type ChangeFunc func(kind ChangeKind, path string, fi os.FileInfo) error

// ChangeWalker is implemented by drivers that can list what a snapshot
// changed without comparing whole trees (btrfs asks the kernel through
// `btrfs send --no-data`). WalkChanges calls start once with root, a
// directory holding the snapshot's tree as it is, then fn for every
// change in the order a walk of the tree meets them (parents first); root
// is valid until WalkChanges returns. It wraps ErrNotImplemented, before
// calling anything, when the driver cannot.
type ChangeWalker interface {
	WalkChanges(ctx context.Context, key string, start func(root string) error, fn ChangeFunc) error
}
