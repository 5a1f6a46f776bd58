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
package layer

import (
	"fmt"
	"os"

	"github.com/layerlab/layerlab/drivers"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = whiteoutPrefix + whiteoutPrefix // reserved for markers
	whiteoutOpaque = whiteoutMeta + ".opq"
)

// Stats counts what Apply applied.
type Stats struct {
	Entries   int64 // tar entries applied, whiteouts included
	Whiteouts int64 // of which ".wh." deletions and opaque markers
	Bytes     int64 // regular file content written
}

// Option changes what Apply accepts or where it spools.
type Option func(*options)

type options struct {
	absSymlinks bool
	devices     bool
	tempDir     string
}

// AllowAbsoluteSymlinks accepts symlinks with absolute targets such as
// /etc/localtime -> /usr/share/zoneinfo/UTC, which real distribution images
// contain. They are safe because Apply never follows a symlink: entries
// below a symlink of the same layer are refused, and symlinks already in the
// snapshot are resolved inside dir. Relative targets that climb out of the
// root stay refused.
func AllowAbsoluteSymlinks() Option { return func(o *options) { o.absSymlinks = true } }

// AllowDevices accepts character and block device nodes, which a container
// image has no business shipping unless the caller knows it wants them.
func AllowDevices() Option { return func(o *options) { o.devices = true } }

// WithTempDir puts the decompressed copy of a layer that Apply validates
// before applying in dir instead of os.TempDir() (which may be a tmpfs too
// small for large layers).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

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
