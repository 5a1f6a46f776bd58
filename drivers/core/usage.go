package core

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/containerd/continuity/fs"

	"github.com/layerlab/layerlab/drivers"
)

// DiffUsage measures what the tree at dir adds on top of the tree at
// parent, for drivers whose snapshot is a whole tree rather than a layer
// of changes (vfs copies, btrfs subvolume snapshots): the meaning
// drivers.Usage has for every driver.
//
// With no parent the whole tree is the snapshot's own, root included
// (DiskUsage). Otherwise the trees are compared with continuity's
// fs.Changes (mode, owner, size and mtime; content when mtimes were
// truncated to whole seconds) and
//   - an added or modified entry counts one inode and all of its allocated
//     blocks, once per inode however many links it has (a modified file
//     counts whole, also where a reflink still shares some of its extents
//     with the parent: st_blocks cannot tell);
//   - a deleted entry counts one inode and no bytes, as the whiteout an
//     overlay upper directory keeps for it does; a deleted directory counts
//     once, not with its contents, as its one whiteout does;
//   - the root directory and directories whose only change is their list
//     of entries do not count (an overlay upper holds a copy of such a
//     directory; that is the one place the counts of the drivers differ).
func DiffUsage(ctx context.Context, parent, dir string) (drivers.Usage, error) {
	if parent == "" {
		return DiskUsage(ctx, dir)
	}
	type inode struct{ dev, ino uint64 }
	var (
		u    drivers.Usage
		seen = make(map[inode]bool)
	)
	err := fs.Changes(ctx, parent, dir, func(kind fs.ChangeKind, path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch kind {
		case fs.ChangeKindDelete:
			u.Inodes++
		case fs.ChangeKindAdd, fs.ChangeKindModify:
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("%s: no stat data", path)
			}
			k := inode{dev: uint64(st.Dev), ino: st.Ino}
			if !seen[k] {
				seen[k] = true
				u.Inodes++
				u.Size += st.Blocks * 512 // st_blocks is in 512-byte units whatever the block size
			}
		}
		return nil
	})
	if err != nil {
		return drivers.Usage{}, fmt.Errorf("changes of %s against its parent %s: %w", dir, parent, err)
	}
	return u, nil
}
