// Package vfs is the baseline driver: every snapshot is a full copy of its
// parent, made with continuity's CopyDir. CopyDir copies with
// copy_file_range, which the kernel turns into an extent clone (reflink) on
// btrfs and on xfs with reflink, and into an in-kernel data copy elsewhere;
// the driver probes which one its home gets and reports it.
package vfs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/containerd/continuity/fs"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Name is the registry name of the driver.
const Name = "vfs"

// The copy methods a home can get.
const (
	CopyReflink   = "reflink"
	CopyFileRange = "copy_file_range"
)

// Factory returns the registry entry for vfs.
func Factory() drivers.Factory {
	return drivers.Factory{
		Name:         Name,
		Summary:      "full copy of the parent per snapshot; the baseline every other driver is compared with",
		Capabilities: capabilities(CopyFileRange, ""),
		Probe:        Probe,
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(New(ctx, home, opts))
		},
		CheckOptions: checkOptions,
	}
}

func capabilities(method, fstype string) drivers.Capabilities {
	c := drivers.Capabilities{
		Strategy:    drivers.FullCopy,
		Granularity: drivers.GranularitySnapshot,
		QuotaNote:   "vfs cannot limit a snapshot's size",
		Kernel:      []string{"bind mounts"},
		Notes:       []string{"copies files with copy_file_range (" + method + ")"},
	}
	if method == CopyReflink {
		// The copy shares extents with the parent, so creation writes
		// metadata only and the first write copies the touched blocks.
		c.Granularity = drivers.GranularityBlock
		c.Notes = []string{"copies files with copy_file_range, which " + fstype + " turns into extent clones (reflink)"}
	}
	return c
}

type backend struct {
	dirs   core.Dirs
	method string
	caps   drivers.Capabilities
}

// New opens a vfs driver with its state under home. vfs takes no options.
func New(ctx context.Context, home string, opts drivers.Options) (*core.Driver, error) {
	if err := checkOptions(opts); err != nil {
		return nil, err
	}
	if err := core.CheckHome(Name, home); err != nil {
		return nil, err
	}
	dirs, err := core.NewDirs(home)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	reflink, err := core.Reflinks(home)
	if err != nil {
		return nil, fmt.Errorf("%s: probe copy method: %w", Name, err)
	}
	method := CopyFileRange
	if reflink {
		method = CopyReflink
	}
	b := &backend{dirs: dirs, method: method}
	b.caps = capabilities(method, core.FSType(home))
	return core.Open(ctx, Name, home, b)
}

// checkOptions refuses every option: vfs takes none.
func checkOptions(opts drivers.Options) error { return opts.Check(Name) }

func (b *backend) fs(id string) string { return b.dirs.Path(id, "fs") }

func (b *backend) Create(ctx context.Context, s storage.Snapshot) error {
	if err := b.dirs.Mkdir(s.ID, "fs"); err != nil {
		return err
	}
	if len(s.ParentIDs) == 0 {
		return nil
	}
	if err := fs.CopyDir(b.fs(s.ID), b.fs(s.ParentIDs[0])); err != nil {
		b.dirs.Remove(s.ID)
		return fmt.Errorf("copy parent: %w", err)
	}
	if err := dirTimes(b.fs(s.ID), b.fs(s.ParentIDs[0])); err != nil {
		b.dirs.Remove(s.ID)
		return fmt.Errorf("copy parent: %w", err)
	}
	return nil
}

// dirTimes gives every directory of the copy dst the times of its
// original in src. CopyDir sets a directory's times before it fills it,
// so each child it makes moves the directory's mtime to the copy's time,
// and Diff of a snapshot would then differ from the layer it came from.
func dirTimes(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, rel), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of the copy of %s: %w", p, err)
		}
		return nil
	})
}

func (b *backend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	return core.Bind(b.fs(s.ID), s.Kind == drivers.KindView), nil
}

func (b *backend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return b.Usage(ctx, s)
}

// Usage is what the snapshot's tree adds to its parent's (core.DiffUsage):
// the files it added or changed and the entries it deleted, not the copy
// of the parent it was made with. That copy costs space too (unless
// reflinked); the harness measures it on the backing store, not here.
func (b *backend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	parent := ""
	if len(s.ParentIDs) > 0 {
		parent = b.fs(s.ParentIDs[0])
	}
	return core.DiffUsage(ctx, parent, b.fs(s.ID))
}

func (b *backend) Remove(ctx context.Context, id string) error { return b.dirs.Remove(id) }

func (b *backend) Paths(id string) []string { return b.dirs.Paths(id) }

func (b *backend) IDs(ctx context.Context) ([]string, error) { return b.dirs.IDs(ctx) }

func (b *backend) Capabilities() drivers.Capabilities { return b.caps }

func (b *backend) Close() error { return nil }
