package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/continuity/fs"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Dirs is the layout of a directory-based driver: one directory per
// snapshot id under Root (home/snapshots).
type Dirs struct {
	Root string
}

// NewDirs creates home/snapshots and returns its layout.
func NewDirs(home string) (Dirs, error) {
	d := Dirs{Root: filepath.Join(home, "snapshots")}
	if err := os.MkdirAll(d.Root, 0o700); err != nil {
		return d, err
	}
	return d, nil
}

// Path returns the directory of snapshot id, joined with elem.
func (d Dirs) Path(id string, elem ...string) string {
	return filepath.Join(append([]string{d.Root, id}, elem...)...)
}

// IDs lists the snapshot directories.
func (d Dirs) IDs(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(d.Root)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if _, err := strconv.ParseUint(e.Name(), 10, 64); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Paths implements Storage for backends that keep each snapshot in its
// directory.
func (d Dirs) Paths(id string) []string { return []string{d.Path(id)} }

// Remove deletes the directory of snapshot id.
func (d Dirs) Remove(id string) error {
	return os.RemoveAll(d.Path(id))
}

// Mkdir makes the directories of snapshot id with the given subdirectories;
// subdirectories get mode 0755 whatever the umask, as containers expect of
// their root.
func (d Dirs) Mkdir(id string, sub ...string) error {
	if err := os.Mkdir(d.Path(id), 0o700); err != nil {
		return err
	}
	return d.Sub(id, sub...)
}

// Sub makes subdirectories of snapshot id's existing directory, mode 0755.
func (d Dirs) Sub(id string, sub ...string) error {
	for _, s := range sub {
		p := d.Path(id, s)
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// SweepScratch removes what a crash during a driver's own short-lived work
// left in dir: the entries named with one of prefixes (feature probes'
// temporary directories, devicemapper's private mount points), unmounting
// first whatever is mounted in them, since only the driver mounts there.
func SweepScratch(dir string, prefixes ...string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		for _, p := range prefixes {
			if !strings.HasPrefix(e.Name(), p) {
				continue
			}
			path := filepath.Join(dir, e.Name())
			points, err := mount.Under(path)
			for _, m := range points {
				err = errors.Join(err, mount.UnmountAll(m))
			}
			if err == nil {
				err = os.RemoveAll(path)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("scratch %s: %w", path, err))
			}
		}
	}
	return errors.Join(errs...)
}

// DiskUsage measures the blocks and inodes under dir.
func DiskUsage(ctx context.Context, dir string) (drivers.Usage, error) {
	u, err := fs.DiskUsage(ctx, dir)
	if err != nil {
		return drivers.Usage{}, fmt.Errorf("disk usage of %s: %w", dir, err)
	}
	return drivers.Usage{Size: u.Size, Inodes: u.Inodes}, nil
}

// Bind returns a bind mount of dir, read-only when ro.
func Bind(dir string, ro bool) []drivers.Mount {
	opt := "rw"
	if ro {
		opt = "ro"
	}
	return []drivers.Mount{{Type: "bind", Source: dir, Options: []string{"rbind", opt}}}
}

// Reflinks reports whether the filesystem under dir clones extents
// (FICLONE works): then copy_file_range, and overlayfs's copy-up which uses
// it, share blocks instead of copying data.
func Reflinks(dir string) (bool, error) {
	probe, err := os.MkdirTemp(dir, ".reflink-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(probe)
	src, err := os.Create(filepath.Join(probe, "src"))
	if err != nil {
		return false, err
	}
	defer src.Close()
	if _, err := src.Write(make([]byte, 4096)); err != nil {
		return false, err
	}
	dst, err := os.Create(filepath.Join(probe, "dst"))
	if err != nil {
		return false, err
	}
	defer dst.Close()
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())) == nil, nil
}

// FSType names the filesystem under path for messages, or "the backing
// filesystem" when it cannot be found.
func FSType(path string) string {
	if m, err := mount.Lookup(path); err == nil {
		return m.FSType
	}
	return "the backing filesystem"
}

// Links is a directory of short symlinks, l/<id> → ../snapshots/<id>/fs.
// Mount options name a snapshot's ancestors by these paths, which share one
// parent directory, so a long chain can be written relative to it and fit
// the kernel's one page of mount data (overlay2's lowerdirs, aufs's
// branches; dockerd's overlay2 does the same).
type Links struct {
	Dir string
}

// NewLinks creates home/l.
func NewLinks(home string) (Links, error) {
	l := Links{Dir: filepath.Join(home, "l")}
	return l, os.MkdirAll(l.Dir, 0o700)
}

// Path is the short path of snapshot id's fs directory.
func (l Links) Path(id string) string { return filepath.Join(l.Dir, id) }

// Make links id to its fs directory.
func (l Links) Make(id string) error {
	return os.Symlink(filepath.Join("..", "snapshots", id, "fs"), l.Path(id))
}

// Remove removes id's link; a missing link is not an error.
func (l Links) Remove(id string) error {
	if err := os.Remove(l.Path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// UnionShortcut returns the mounts of s when a union filesystem is not
// needed: a snapshot with no parent is its own fs directory, and a view of
// a single layer is that layer, read-only (overlayfs cannot even mount one
// lower without an upper). ok is false when s needs the union mount.
func (d Dirs) UnionShortcut(s storage.Snapshot) (ms []drivers.Mount, ok bool) {
	switch {
	case len(s.ParentIDs) == 0:
		return Bind(d.Path(s.ID, "fs"), s.Kind == drivers.KindView), true
	case s.Kind == drivers.KindView && len(s.ParentIDs) == 1:
		return Bind(d.Path(s.ParentIDs[0], "fs"), true), true
	}
	return nil, false
}
