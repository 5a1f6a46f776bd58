// Package drivers defines layerlab's one copy-on-write / redirect-on-write
// snapshotter interface, the capabilities every driver declares, a registry
// that opens drivers by name, and the sentinel errors they return.
//
// The shape follows containerd's snapshotter: operations return mount
// descriptions instead of mounting, so a harness can time creation and
// mounting apart, and Commit is explicit so it maps 1:1 onto a zfs
// snapshot (children are its clones), a btrfs subvolume that children
// snapshot, a dm-thin device that children create_snap, and an overlay
// upper directory that becomes its children's lower.
package drivers

import (
	"context"
	"fmt"
	"strconv"

	"time"

	units "github.com/docker/go-units"
)

// Kind is the state of a snapshot.
type Kind uint8

// The snapshot kinds. Active snapshots are writable, views are read-only
// and disposable, committed snapshots are immutable parents.
const (
	KindUnknown Kind = iota
	KindView
	KindActive
	KindCommitted
)

func (k Kind) String() string {
	switch k {
	case KindView:
		return "view"
	case KindActive:
		return "active"
	case KindCommitted:
		return "committed"
	}
	return "unknown"
}

// ParseKind is the inverse of Kind.String.
func ParseKind(s string) (Kind, error) {
	for _, k := range []Kind{KindView, KindActive, KindCommitted} {
		if k.String() == s {
			return k, nil
		}
	}
	return KindUnknown, fmt.Errorf("kind %q: %w (want view, active or committed)", s, ErrInvalidArgument)
}

// Info describes one snapshot.
type Info struct {
	Kind    Kind
	Name    string            // the key of an active or view snapshot, the name of a committed one
	Parent  string            // name of the committed parent, empty for a base snapshot
	Labels  map[string]string // free-form, owned by the caller
	Created time.Time
	Updated time.Time
}

// Usage is the space a snapshot adds on top of its parent: one meaning
// for every driver, so a child of a large parent that writes one file
// reports that file, not the parent's data it sees. A snapshot without a
// parent adds its whole tree.
//
// Size is the bytes of allocated blocks the snapshot holds that its
// parent does not: an overlay or aufs upper directory, a zfs clone's
// unshared blocks, a btrfs subvolume's exclusive bytes while qgroups are
// on, the blocks a dm-thin device maps beyond its origin's, and otherwise
// (vfs, btrfs without qgroups) the blocks of the files added or changed
// against the parent's tree, a changed file counted whole. The space a
// driver spends to make the child (vfs's copy of its parent) is not
// usage; the harness measures it on the backing store.
//
// Inodes counts the entries added, changed or deleted against the
// parent; a deletion counts one, as the whiteout an overlay upper keeps
// for it does. Drivers differ at the edges: an overlay or aufs upper
// counts its own root and the directories it copied up, zfs counts only
// inode numbers its parent lacks (not changed or deleted files), a
// dm-thin device the growth of its filesystem's used inodes.
type Usage struct {
	Size   int64 // bytes of allocated blocks
	Inodes int64
}

// Add accumulates u2 into u.
func (u *Usage) Add(u2 Usage) {
	u.Size += u2.Size
	u.Inodes += u2.Inodes
}

// Mount describes one mount(2) call. Drivers return these; the mount package
// performs them.
type Mount struct {
	Type    string   // filesystem type: "overlay", "bind", "btrfs", ...
	Source  string   // device or directory
	Options []string // fstab-style options, including flags such as "ro" and "rbind"
}

// Opt changes the Info a Prepare, View or Commit records.
type Opt func(*Info) error

// WithLabels merges labels into the snapshot's labels.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if info.Labels == nil {
			info.Labels = make(map[string]string, len(labels))
		}
		for k, v := range labels {
			info.Labels[k] = v
		}
		return nil
	}
}

// LabelSize is the label WithSize sets: a per-snapshot size limit in
// bytes, enforced by drivers whose Capabilities say Quota.
const LabelSize = "layerlab.io/size"

// WithSize asks for a size limit of bytes on an active snapshot.
func WithSize(bytes int64) Opt {
	return WithLabels(map[string]string{LabelSize: strconv.FormatInt(bytes, 10)})
}

// SizeOf returns the size limit labels ask for, or def when they ask for
// none.
func SizeOf(labels map[string]string, def int64) (int64, error) {
	v, ok := labels[LabelSize]
	if !ok {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("label %s=%q: want a byte count: %w", LabelSize, v, ErrInvalidArgument)
	}
	return n, nil
}

// ParseSize reads a size option such as "10G" or "512M" (binary units, as
// dockerd's --storage-opt size= does).
func ParseSize(option, v string) (int64, error) {
	n, err := units.RAMInBytes(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("option %s=%q: want a size such as 10G or 512M: %w", option, v, ErrInvalidArgument)
	}
	return n, nil
}

// SizeOnly reads the options of a driver whose one option is size, a
// default limit for its active snapshots (0 when not given).
func SizeOnly(driver string, opts Options) (int64, error) {
	if err := opts.Check(driver, "size"); err != nil {
		return 0, err
	}
	v, ok := opts["size"]
	if !ok {
		return 0, nil
	}
	size, err := ParseSize("size", v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", driver, err)
	}
	return size, nil
}

// Filter selects snapshots for Walk. Every field that is set must match;
// the store applies filters while it reads, so a caller that wants a few
// snapshots of a large tree does not receive them all.
type Filter struct {
	Kind   Kind              // KindUnknown matches every kind
	Name   string            // "" matches every name
	Parent string            // "" matches every parent, unless Base is set
	Base   bool              // only snapshots without a parent
	Labels map[string]string // each label must be present with this value
}

// Match reports whether info passes f.
func (f Filter) Match(info Info) bool {
	switch {
	case f.Kind != KindUnknown && info.Kind != f.Kind,
		f.Name != "" && info.Name != f.Name,
		f.Parent != "" && info.Parent != f.Parent,
		f.Base && info.Parent != "":
		return false
	}
	for k, v := range f.Labels {
		if got, ok := info.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// MatchAny reports whether info passes at least one of filters, or there
// are none.
func MatchAny(info Info, filters []Filter) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if f.Match(info) {
			return true
		}
	}
	return false
}

// WalkFunc is called for every snapshot by Walk. Returning an error stops
// the walk and returns that error.
type WalkFunc func(context.Context, Info) error

// Snapshotter manages a tree of snapshots. Implementations are safe for
// concurrent use.
type Snapshotter interface {
	// Stat returns the info of the snapshot named key.
	Stat(ctx context.Context, key string) (Info, error)
	// Update changes the mutable fields of a snapshot (labels). With no
	// fieldpaths all labels are replaced; "labels" does the same, and
	// "labels.NAME" changes only that label.
	Update(ctx context.Context, info Info, fieldpaths ...string) (Info, error)
	// Usage returns the space the snapshot adds on top of its parent (see
	// Usage), measured now for an active or view snapshot and recorded at
	// Commit for a committed one.
	Usage(ctx context.Context, key string) (Usage, error)
	// Mounts returns the mounts of an active or view snapshot.
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Prepare creates an active (writable) snapshot on top of parent, which
	// must be committed, or empty for a base snapshot.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// View creates a read-only snapshot of parent.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot name.
	// The active snapshot must not be mounted any more.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes a snapshot; a committed snapshot with children cannot
	// be removed.
	Remove(ctx context.Context, key string) error
	// Walk calls fn for every snapshot that matches any of filters (every
	// snapshot when none is given), outside any metadata transaction, so fn
	// may call back into the snapshotter.
	Walk(ctx context.Context, fn WalkFunc, filters ...Filter) error
	// Close releases the driver. Calling it twice is allowed.
	Close() error
}

// Driver is a Snapshotter that can say how it stores data.
type Driver interface {
	Snapshotter
	// Capabilities reports the storage strategy of this opened driver; it
	// may differ from its factory's (vfs reflinks on btrfs and xfs).
	Capabilities() Capabilities
}
