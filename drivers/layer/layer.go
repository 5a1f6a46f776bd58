// Package layer moves OCI / Docker image layers in and out of snapshots:
// Apply unpacks a layer tar into a mounted snapshot of any driver, Diff and
// DiffOverlayUpper write the changes of a snapshot as a layer tar, and
// Generate makes reproducible synthetic layers for benchmarks.
//
// Whiteouts follow the OCI image spec: an entry ".wh.<name>" deletes <name>
// from the layers below, and ".wh..wh..opq" in a directory hides everything
// the layers below put there. Apply works on the mounted view, so a
// whiteout is a real deletion there and the driver turns it into whatever
// it stores (an overlay whiteout, a removed file in a btrfs/zfs clone).
//
// # A failed Apply
//
// An Apply that fails either wrote nothing, or says the snapshot is now
// unusable; it never leaves a half-written snapshot that looks fine:
//
//   - Every error that does not wrap ErrUnusable was returned before the
//     first write: the snapshot is exactly as it was. Apply reads the whole
//     layer once before writing anything (the first pass), so everything a
//     tar's headers can tell is refused there: unsafe names and links,
//     hardlinks to files that do not exist, files under files, malformed
//     security.capability and ACL xattrs, a truncated tar, a DiffID other
//     than the expected one, more bytes or inodes than the budget.
//   - An error that wraps ErrUnusable happened after writing began (the
//     filesystem refused a write, ran out of space, the context was
//     cancelled): part of the layer is in the snapshot and nothing takes
//     it back. The caller must remove the snapshot (and prepare a new one
//     to try again); committing it would make a layer that is neither the
//     parent nor the parent plus the layer.
//
// Undoing a partial apply in place was the other choice, and was turned
// down: it needs a copy of everything the layer replaces or deletes, which
// on overlay means copying up whole lower files and directories that cannot
// be renamed (EXDEV without redirect_dir), and the undo can itself fail
// half-way (ENOSPC is a common reason to be undoing). A snapshot is cheap
// to remove and prepare again; a wrong one is not cheap to find.
//
// # Why Apply writes files itself
//
// The second pass is hand-written rather than containerd's archive.Apply,
// which the first versions used: that one creates the parent directories of
// a whiteout whose directory the snapshot lacks, removes a file before
// finding that the hardlink replacing it has no target, sets directory
// times after the whole layer (failing on a directory the layer deleted),
// writes the holes of sparse files as data, and walks every parent path
// with an lstat per component for every entry. Here the first pass has
// already proved each of those cases safe or refused them, and the second
// pass only writes.
package layer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = whiteoutPrefix + whiteoutPrefix // reserved for markers
	whiteoutOpaque = whiteoutMeta + ".opq"
)

// ErrUnusable is wrapped by an Apply error that happened after Apply
// began writing: the snapshot holds part of the layer and must be removed.
var ErrUnusable = errors.New("snapshot is unusable after a failed apply and must be removed")

// Stats counts what Apply applied.
type Stats struct {
	Entries   int64 // tar entries applied, whiteouts included
	Whiteouts int64 // of which ".wh." deletions and opaque markers
	Bytes     int64 // regular file content written
	// DiffID is the sha256 of the uncompressed layer tar, the digest an
	// image config lists in rootfs.diff_ids.
	DiffID digest.Digest
}

// Budget bounds what one Apply may add: regular file bytes (logical
// sizes, so a sparse file counts whole) and entries. Zero means no bound.
type Budget struct {
	Bytes  int64
	Inodes int64
}

// Option changes what Apply accepts or where it spools.
type Option func(*options)

type options struct {
	absSymlinks *bool // nil: the default, allowed
	devices     bool
	tempDir     string
	diffID      digest.Digest
	budget      *Budget
	literal     bool
}

func (o options) allowAbs() bool { return o.absSymlinks == nil || *o.absSymlinks }

// whiteout says whether an entry's base name is a whiteout or opaque
// marker under these options.
func (o options) whiteout(base string) bool {
	return !o.literal && strings.HasPrefix(base, whiteoutPrefix)
}

// AllowAbsoluteSymlinks says whether symlinks with absolute targets, such
// as /etc/localtime -> /usr/share/zoneinfo/UTC, are accepted. They are by
// default, because real distribution images are full of them, and they
// are safe during Apply because Apply never follows a symlink of the
// layer: entries below one are refused, and symlinks the snapshot already
// holds are resolved inside the snapshot's root. Outside Apply an absolute
// target means what it means on the host: inspect a snapshot from inside
// its root (chroot, a container), not by following its links on the host.
func AllowAbsoluteSymlinks(allow bool) Option {
	return func(o *options) { o.absSymlinks = &allow }
}

// LiteralNames applies a tar that is not an image layer (a build context,
// an archive ADD extracts): entries named ".wh.*" are ordinary files, as
// a plain untar makes them, not deletions. Every other check stays.
func LiteralNames() Option { return func(o *options) { o.literal = true } }

// AllowDevices accepts character and block device nodes, which a container
// image has no business shipping unless the caller knows it wants them.
func AllowDevices() Option { return func(o *options) { o.devices = true } }

// WithTempDir puts the decompressed copy of a layer that Apply validates
// before applying in dir instead of os.TempDir() (which may be a tmpfs too
// small for large layers).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

// WithDiffID makes Apply refuse, before writing anything, a layer whose
// uncompressed sha256 is not d (the image config's rootfs.diff_ids entry).
func WithDiffID(d digest.Digest) Option { return func(o *options) { o.diffID = d } }

// WithBudget bounds what the layer may add. Without it the budget is what
// statfs says the target can still take: the free bytes and inodes of the
// backing store, which on xfs with project quota and on zfs is the
// snapshot's quota. Where statfs does not show a quota (btrfs qgroups),
// pass the snapshot's size (drivers.SizeOf of its labels) here.
func WithBudget(b Budget) Option { return func(o *options) { o.budget = &b } }

// EntryError is a layer entry Apply refuses. It wraps
// drivers.ErrInvalidArgument.
type EntryError struct {
	Entry string // the entry's name as written in the tar
	Rule  string // the rule it breaks
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("layer entry %q: %s: %v", e.Entry, e.Rule, drivers.ErrInvalidArgument)
}

// Unwrap makes errors.Is(err, drivers.ErrInvalidArgument) hold.
func (e *EntryError) Unwrap() error { return drivers.ErrInvalidArgument }

func reject(name, format string, args ...any) error {
	return &EntryError{Entry: name, Rule: fmt.Sprintf(format, args...)}
}

// invalid is an error about the layer as a whole (not one entry).
func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), drivers.ErrInvalidArgument)
}

// checkDir returns nil when dir is an existing directory.
func checkDir(what, dir string) error {
	fi, err := os.Stat(dir)
	if os.IsNotExist(err) {
		return fmt.Errorf("%s %s: %w", what, dir, drivers.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a directory: %w", what, dir, drivers.ErrInvalidArgument)
	}
	return nil
}
