package btrfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/containerd/continuity/sysx"
	"github.com/dennwc/btrfs"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/storage"
)

// The native differ: `btrfs send --no-data -p PARENT CHILD` makes the
// kernel compare the two subvolumes' trees, skipping every tree block they
// still share, and name each inode that changed. The names are suspects,
// not the answer: the stream renames new inodes from temporary names into
// place and moves directories, so each suspect is checked against both
// trees, and a directory renamed into place is compared whole. A change
// the stream does not name cannot exist, so nothing else is looked at.

// sendPrefix names the scratch directories holding the read-only snapshots
// send needs (the driver's own subvolumes stay writable; see the package
// comment); New deletes any a crash left.
const sendPrefix = ".send-"

// suspects are the paths (relative, no leading slash) a send stream named.
type suspects struct {
	paths map[string]bool // to compare
	deep  map[string]bool // to compare with everything under them
	data  map[string]bool // whose file data changed
}

func readSuspects(stream []byte) (suspects, error) {
	s := suspects{paths: map[string]bool{}, deep: map[string]bool{}, data: map[string]bool{}}
	add := func(p string, deep bool) {
		p = strings.Trim(filepath.Clean("/"+p), "/")
		if p == "" {
			return
		}
		s.paths[p] = true
		if deep {
			s.deep[p] = true
		}
	}
	err := parseSend(stream, func(c sendCmd) error {
		switch c.cmd {
		case sendSubvol, sendSnapshot:
		case sendRename:
			add(c.path(attrPath), true)
			add(c.path(attrPathTo), true)
		case sendLink:
			add(c.path(attrPath), false)
			add(c.path(attrPathLink), false)
		case sendWrite, sendClone, sendTruncate, sendUpdateExtent:
			add(c.path(attrPath), false)
			s.data[strings.Trim(filepath.Clean("/"+c.path(attrPath)), "/")] = true
		default:
			add(c.path(attrPath), false)
		}
		return nil
	})
	return s, err
}

// walkChanges calls fn for each change of child against parent (both
// directories, parent "" for none) among the suspects, in the order a
// walk of the tree meets them.
func walkChanges(parent, child string, s suspects, fn drivers.ChangeFunc) error {
	list := make([]string, 0, len(s.paths))
	for p := range s.paths {
		list = append(list, p)
	}
	slices.SortFunc(list, comparePaths)
	var done []string // subtrees already handled whole
	under := func(p string) bool {
		for _, d := range done {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		return false
	}
	for _, p := range list {
		if under(p) {
			continue
		}
		whole, err := compareAt(parent, child, p, s, fn)
		if err != nil {
			return err
		}
		if whole {
			done = append(done, p)
		}
	}
	return nil
}

// compareAt reports the change at p, and says whether it handled all of
// p's subtree (a deletion, an added directory, a deep comparison).
func compareAt(parent, child, p string, s suspects, fn drivers.ChangeFunc) (bool, error) {
	cfi, cerr := os.Lstat(filepath.Join(child, p))
	var pfi os.FileInfo
	perr := os.ErrNotExist
	if parent != "" {
		pfi, perr = os.Lstat(filepath.Join(parent, p))
	}
	for _, err := range []error{cerr, perr} {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	switch {
	case cerr != nil && perr != nil:
		return false, nil
	case cerr != nil:
		return true, fn(drivers.ChangeDelete, "/"+p, nil)
	case perr != nil:
		return cfi.IsDir(), addTree(child, p, cfi, fn)
	}
	changed, err := differs(filepath.Join(parent, p), filepath.Join(child, p), pfi, cfi, s.data[p])
	if err != nil {
		return false, err
	}
	if changed {
		if err := fn(drivers.ChangeModify, "/"+p, cfi); err != nil {
			return false, err
		}
	}
	if !s.deep[p] || !cfi.IsDir() || !pfi.IsDir() {
		return s.deep[p], nil
	}
	// Compared whole: every name in either directory.
	names := map[string]bool{}
	for _, dir := range []string{filepath.Join(parent, p), filepath.Join(child, p)} {
		des, err := os.ReadDir(dir)
		if err != nil {
			return false, err
		}
		for _, de := range des {
			names[de.Name()] = true
		}
	}
	sub := suspects{paths: map[string]bool{}, deep: map[string]bool{}, data: s.data}
	for n := range names {
		sub.paths[p+"/"+n] = true
		sub.deep[p+"/"+n] = true
	}
	return true, walkChanges(parent, child, sub, fn)
}

// addTree reports p and, for a directory, everything under it as added.
func addTree(child, p string, fi os.FileInfo, fn drivers.ChangeFunc) error {
	if err := fn(drivers.ChangeAdd, "/"+p, fi); err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	des, err := os.ReadDir(filepath.Join(child, p))
	if err != nil {
		return err
	}
	for _, de := range des { // ReadDir sorts by name, as a walk does
		q := p + "/" + de.Name()
		info, err := os.Lstat(filepath.Join(child, q))
		if err != nil {
			return err
		}
		if err := addTree(child, q, info, fn); err != nil {
			return err
		}
	}
	return nil
}

// differs compares what a layer carries of an entry: type and mode,
// owner, device, size, mtime, link target, extended attributes, and for
// a regular file whether it is still the same inode with no data change
// (a snapshot keeps inode numbers; send named the data changes).
func differs(ppath, cpath string, pfi, cfi os.FileInfo, data bool) (bool, error) {
	ps, cs := pfi.Sys().(*syscall.Stat_t), cfi.Sys().(*syscall.Stat_t)
	if pfi.Mode() != cfi.Mode() || ps.Uid != cs.Uid || ps.Gid != cs.Gid || ps.Rdev != cs.Rdev ||
		(!cfi.IsDir() && pfi.Size() != cfi.Size()) || ps.Mtim != cs.Mtim {
		return true, nil
	}
	if cfi.Mode().IsRegular() && (data || ps.Ino != cs.Ino) {
		return true, nil
	}
	if cfi.Mode()&os.ModeSymlink != 0 {
		pl, err := os.Readlink(ppath)
		if err != nil {
			return false, err
		}
		cl, err := os.Readlink(cpath)
		return pl != cl, err
	}
	px, err := xattrs(ppath)
	if err != nil {
		return false, err
	}
	cx, err := xattrs(cpath)
	return !bytes.Equal(px, cx), err
}

// xattrs returns p's extended attribute names and values, sorted.
func xattrs(p string) ([]byte, error) {
	names, err := sysx.LListxattr(p)
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	slices.Sort(names)
	var out bytes.Buffer
	for _, name := range names {
		v, err := sysx.LGetxattr(p, name)
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		fmt.Fprintf(&out, "%s=%x;", name, v)
	}
	return out.Bytes(), nil
}

// comparePaths orders paths as a walk of the tree meets them: component
// by component, so "a/b" comes before "a-c".
func comparePaths(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// WalkChanges implements core.ChangeWalker: send between read-only
// snapshots of the parent and the child, made for the purpose in a
// scratch directory and deleted afterwards.
func (b *backend) WalkChanges(ctx context.Context, s storage.Snapshot, start func(root string) error, fn drivers.ChangeFunc) (err error) {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	// In the home, beside snapshots/: the sweep of orphaned snapshot
	// directories must never meet these.
	scratch := filepath.Join(filepath.Dir(b.dirs.Root), sendPrefix+hex.EncodeToString(suffix))
	if err := os.Mkdir(scratch, 0o700); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, removeScratch(scratch)) }()
	child := filepath.Join(scratch, "child")
	if err := snapshotRO(b.fs(s.ID), child); err != nil {
		return err
	}
	args := []string{"send", "--no-data", "--proto", "1", "-q", "-f", "/dev/stdout"}
	parent := ""
	if len(s.ParentIDs) > 0 {
		parent = filepath.Join(scratch, "parent")
		if err := snapshotRO(b.fs(s.ParentIDs[0]), parent); err != nil {
			return err
		}
		args = append(args, "-p", parent)
	}
	stream, err := command.Run(ctx, "btrfs", append(args, child)...)
	if err != nil {
		return err
	}
	sus, err := readSuspects(stream)
	if err != nil {
		return err
	}
	if err := start(child); err != nil {
		return err
	}
	return walkChanges(parent, child, sus, fn)
}

// snapshotRO makes a read-only snapshot of the subvolume src at dst, as
// send needs.
func snapshotRO(src, dst string) error {
	if err := btrfs.SnapshotSubVolume(src, dst, true); err != nil {
		return fmt.Errorf("read-only snapshot of %s: %w", src, err)
	}
	return nil
}

// removeScratch deletes the read-only snapshots in a send scratch
// directory, then the directory.
func removeScratch(dir string) error {
	des, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, de := range des {
		if err := btrfs.DeleteSubVolume(filepath.Join(dir, de.Name())); err != nil {
			errs = append(errs, fmt.Errorf("delete scratch subvolume %s: %w", de.Name(), err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

// sweepSend removes the scratch directories a crash during WalkChanges
// left in home.
func sweepSend(home string) error {
	des, err := os.ReadDir(home)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, de := range des {
		if strings.HasPrefix(de.Name(), sendPrefix) {
			errs = append(errs, removeScratch(filepath.Join(home, de.Name())))
		}
	}
	return errors.Join(errs...)
}
