// Package btrfs is the btrfs driver: every snapshot is a btrfs subvolume,
// home/snapshots/<id>/fs. A base snapshot is a new, empty subvolume; a
// child is a snapshot of its parent's subvolume, which shares all of the
// parent's extents and writes its changes to new blocks
// (redirect-on-write), so creation costs metadata only whatever the depth
// of the chain. Snapshots are mounted as bind mounts of their subvolume,
// read-only for views.
//
// No subvolume is given the read-only flag, committed or view (see Commit
// and Create): the flag cannot be undone by a failed Commit, and it makes
// a home impossible to remove with rm -r. Immutability rests on the driver
// instead, as with dockerd's btrfs driver: committed snapshots are never
// mounted, and a child is a snapshot, not a reader of its parent's tree.
//
// Size limits use btrfs qgroups (quota.Btrfs), turned on for the whole
// filesystem when the first limit is asked for.
package btrfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dennwc/btrfs"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/storage"
	"github.com/layerlab/layerlab/quota"
)

// Name is the registry name of the driver.
const Name = "btrfs"

// Factory returns the registry entry for btrfs.
func Factory() drivers.Factory {
	return drivers.Factory{
		Name:         Name,
		Summary:      "a btrfs subvolume per snapshot; children are subvolume snapshots of their parent",
		Capabilities: capabilities(true),
		Probe:        Probe,
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(New(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := drivers.SizeOnly(Name, o); return err },
	}
}

func capabilities(quotaOK bool) drivers.Capabilities {
	c := drivers.Capabilities{
		Strategy:    drivers.RedirectOnWrite,
		Granularity: drivers.GranularityBlock,
		Quota:       quotaOK,
		QuotaNote:   "btrfs qgroups",
		Kernel:      []string{"btrfs"},
		Notes: []string{
			"a size limit turns btrfs qgroups on for the whole filesystem, and limits each subvolume's exclusive bytes",
			"usage is a subvolume's exclusive bytes while qgroups are on, else the blocks of the files it added or changed against its parent",
		},
	}
	if !quotaOK {
		c.QuotaNote = "btrfs qgroups, which only root can turn on, and only on a filesystem mounted read-write"
	}
	return c
}

type backend struct {
	dirs  core.Dirs
	quota *quota.Btrfs
	size  int64 // default limit of active snapshots from the size option, 0 for none
	caps  drivers.Capabilities
}

// New opens a btrfs driver with its state under home, which must be on
// btrfs. It takes one option, size: a default limit for every active
// snapshot (drivers.WithSize overrides it per snapshot).
func New(ctx context.Context, home string, opts drivers.Options) (*core.Driver, error) {
	size, err := drivers.SizeOnly(Name, opts)
	if err != nil {
		return nil, err
	}
	if err := core.CheckHome(Name, home); err != nil {
		return nil, err
	}
	// Refuse before creating anything, so a wrong home is left untouched.
	backing, err := kernel.BackingOf(home)
	if err != nil {
		return nil, fmt.Errorf("%s: examine the filesystem under %s: %w", Name, home, err)
	}
	if reason := notBtrfs(home, backing); reason != "" {
		return nil, fmt.Errorf("%s: %w: %s", Name, drivers.ErrUnavailable, reason)
	}
	dirs, err := core.NewDirs(home)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := sweepSend(filepath.Dir(dirs.Root)); err != nil {
		return nil, fmt.Errorf("%s: remove what an interrupted diff left: %w", Name, err)
	}
	q, err := quota.NewBtrfs(dirs.Root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if size > 0 {
		// Turn quota on now, so a filesystem that cannot have it fails
		// the open rather than the first Prepare.
		if err := q.Enable(ctx); err != nil {
			return nil, fmt.Errorf("%s: size=%s needs btrfs qgroups: %w: %w", Name, opts["size"], drivers.ErrUnavailable, err)
		}
	}
	b := &backend{dirs: dirs, quota: q, size: size, caps: capabilities(canEnableQuota(dirs.Root))}
	return core.Open(ctx, Name, home, b)
}

func (b *backend) fs(id string) string { return b.dirs.Path(id, "fs") }

func (b *backend) Create(ctx context.Context, s storage.Snapshot) (err error) {
	// A limit on a view is not applied: nothing writes to it.
	var limit int64
	if s.Kind == drivers.KindActive {
		if limit, err = drivers.SizeOf(s.Labels, b.size); err != nil {
			return err
		}
	}
	if err := b.dirs.Mkdir(s.ID); err != nil {
		return err
	}
	defer func() {
		if err != nil { // core only removes storage that Create made whole
			err = errors.Join(err, b.Remove(ctx, s.ID))
		}
	}()
	fs := b.fs(s.ID)
	if len(s.ParentIDs) == 0 {
		if err := btrfs.CreateSubVolume(fs); err != nil {
			return fmt.Errorf("create subvolume %s: %w", fs, err)
		}
		// The subvolume root is made with the umask applied; containers
		// expect 0755 of their root.
		if err := os.Chmod(fs, 0o755); err != nil {
			return err
		}
	} else {
		// Views are writable snapshots behind a read-only bind mount, not
		// read-only snapshots: a read-only subvolume's files cannot be
		// unlinked, so removing a home with rm -r (containerd's suite
		// does so after Close) would fail on one.
		parent := b.fs(s.ParentIDs[0])
		if err := btrfs.SnapshotSubVolume(parent, fs, false); err != nil {
			return fmt.Errorf("snapshot subvolume %s to %s: %w", parent, fs, err)
		}
	}
	t := quota.Target{Path: fs}
	if limit > 0 {
		return b.quota.Set(ctx, t, limit)
	}
	if len(s.ParentIDs) > 0 {
		// A snapshot's qgroup inherits the limits of its source's, so a
		// child of a limited parent would be limited without asking.
		return b.quota.Clear(ctx, t)
	}
	return nil
}

func (b *backend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	return core.Bind(b.fs(s.ID), s.Kind == drivers.KindView), nil
}

// Commit leaves the subvolume as it is and only measures it. Setting the
// subvolume's read-only flag here would be a change the metadata record
// does not cover: when the record's update then fails, or the process
// dies before it is made, the snapshot stays active on a subvolume nothing
// can write to (and the flag keeps rm -r from removing the home; see the
// package comment). Nothing mounts a committed snapshot (core refuses),
// and its children are snapshots that share extents, not directories that
// read through it, so a write to it afterwards could not reach them.
func (b *backend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return b.Usage(ctx, s)
}

// Usage is what the subvolume adds to its parent's. The inode count, and
// the bytes while qgroups are off, come from comparing its tree with its
// parent's (core.DiffUsage); the bytes while qgroups are on are the
// qgroup's exclusive bytes, which also count the tree blocks btrfs
// rewrote for the change and, unlike the comparison, only the changed
// extents of a changed file.
func (b *backend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	fs, parent := b.fs(s.ID), ""
	if len(s.ParentIDs) > 0 {
		parent = b.fs(s.ParentIDs[0])
	}
	u, err := core.DiffUsage(ctx, parent, fs)
	if err != nil {
		return u, err
	}
	on, err := b.quota.Enabled()
	if err != nil || !on {
		return u, err
	}
	q, err := b.quota.Get(ctx, quota.Target{Path: fs})
	if errors.Is(err, drivers.ErrFailedPrecondition) {
		return u, nil // qgroup numbers are inconsistent until a rescan: the comparison is the better answer
	}
	if err != nil {
		return u, err
	}
	u.Size = q.Used
	return u, nil
}

// Remove deletes the subvolume, then its directory. Deleting a subvolume
// fails when another is nested in it (a container may make one); then
// the tree is removed file by file, as rmdir deletes empty subvolumes.
func (b *backend) Remove(ctx context.Context, id string) error {
	fs := b.fs(id)
	isSub, err := btrfs.IsSubVolume(fs)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if isSub {
		if err := btrfs.DeleteSubVolume(fs); err != nil {
			if werr := setWritable(fs); werr != nil {
				return fmt.Errorf("delete subvolume %s: %w (and clear its read-only flag: %v)", fs, err, werr)
			}
			if rerr := b.dirs.Remove(id); rerr != nil {
				return fmt.Errorf("delete subvolume %s: %w (and remove it file by file: %v)", fs, err, rerr)
			}
			return nil
		}
	}
	return b.dirs.Remove(id)
}

// setWritable clears the read-only flag of the subvolume at path.
func setWritable(path string) error {
	f, err := btrfs.Open(path, false)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := f.GetFlags()
	if err != nil || !flags.ReadOnly() {
		return err
	}
	return f.SetFlags(flags &^ btrfs.SubvolReadOnly)
}

func (b *backend) Paths(id string) []string { return b.dirs.Paths(id) }

func (b *backend) IDs(ctx context.Context) ([]string, error) { return b.dirs.IDs(ctx) }

func (b *backend) Capabilities() drivers.Capabilities { return b.caps }

func (b *backend) Close() error { return nil }
