// Package quota is layerlab's one interface for per-snapshot size limits,
// with an implementation per mechanism: xfs project quota (overlay2 on
// xfs), btrfs qgroups and zfs's quota property. Drivers take a limit as the
// `size` option (a default for every writable snapshot) or per snapshot
// through drivers.WithSize, and hand it to their controller.
package quota

import (
	"context"
	"errors"
)

// ErrUnsupported is wrapped when the backing filesystem cannot enforce a
// limit; the message says why and what would.
var ErrUnsupported = errors.New("quota not supported")

// Target names what a limit applies to.
type Target struct {
	// Path is the directory (xfs, btrfs subvolume) or dataset name (zfs).
	Path string
	// Project is the xfs project id, allocated by the driver and recorded
	// in its metadata store so that Remove releases it.
	Project uint32
}

// Quota is a limit and the usage counted against it, in bytes.
type Quota struct {
	Limit int64 `json:"limit"` // 0 means none
	Used  int64 `json:"used"`
}

// Controller sets, reads and clears limits on one filesystem.
type Controller interface {
	// Mechanism names what enforces the limit, e.g. "xfs project quota".
	Mechanism() string
	// Set limits target to limit bytes; writes past it fail with EDQUOT
	// or ENOSPC.
	Set(ctx context.Context, t Target, limit int64) error
	// Get returns target's limit and usage.
	Get(ctx context.Context, t Target) (Quota, error)
	// Clear removes target's limit.
	Clear(ctx context.Context, t Target) error
}
