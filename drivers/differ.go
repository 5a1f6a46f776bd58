package drivers

import "context"

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
