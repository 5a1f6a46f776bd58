package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// overlayXattrPrefix marks overlayfs's private attributes (opaque,
// origin, impure, redirect). They describe an upper directory's relation to
// its lowers and must not leak into a layer tree that later serves as a
// lower itself.
const overlayXattrPrefix = "trusted.overlay."

// linkTree recreates the directory tree src at dst: directories are made
// anew with src's metadata, everything else is hardlinked.
func linkTree(ctx context.Context, src, dst string) error {
	var dirs []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			dirs = append(dirs, rel)
			return mkdirLike(target, path)
		}
		return os.Link(path, target)
	})
	if err != nil {
		return err
	}
	return setDirTimes(src, dst, dirs)
}

// checkUpper refuses an upper entry that overlayfs made with redirect_dir
// or metacopy on: a redirected directory's contents, and a metacopy file's
// data, live in the lower layers, so hardlinking the entry into the layer
// tree would build a wrong tree (an empty directory, a file of holes).
// Mounts pin both features off (baseOptions); an upper written by another
// mount, or on a kernel without the parameters, may still carry them.
func checkUpper(upper, path string) error {
	names, err := listXattrs(path)
	if err != nil {
		return err
	}
	for _, name := range names {
		feature := ""
		switch name {
		case overlayXattrPrefix + "redirect":
			feature = "redirect_dir"
		case overlayXattrPrefix + "metacopy":
			feature = "metacopy"
		default:
			continue
		}
		rel, _ := filepath.Rel(upper, path)
		return fmt.Errorf("%s in upper directory %s carries %s, written by an overlay mount with %s=on: its contents live in the lower layers and classic overlay cannot build a layer tree from it; write the snapshot through the driver's own mounts, which pin %s=off: %w",
			rel, upper, name, feature, feature, drivers.ErrNotImplemented)
	}
	return nil
}

// applyUpper applies an overlay upper directory's changes to the layer tree
// root: whiteouts (0/0 character devices) delete, opaque directories
// replace, everything else replaces the path in root by a hardlink. An
// entry made with redirect_dir or metacopy on is refused (checkUpper).
func applyUpper(ctx context.Context, upper, root string) error {
	var dirs []string
	err := filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, path)
		target := filepath.Join(root, rel)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		if rel != "." && !isWhiteout(&st) {
			if err := checkUpper(upper, path); err != nil {
				return err
			}
		}
		switch {
		case rel == ".":
			dirs = append(dirs, rel)
			return copyMeta(target, path, &st)
		case isWhiteout(&st):
			return os.RemoveAll(target)
		case d.IsDir():
			dirs = append(dirs, rel)
			existing, err := os.Lstat(target)
			if err == nil && (!existing.IsDir() || isOpaque(path)) {
				if err := os.RemoveAll(target); err != nil {
					return err
				}
			} else if err == nil {
				return copyMeta(target, path, &st)
			}
			return mkdirLike(target, path)
		default:
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			return os.Link(path, target)
		}
	})
	if err != nil {
		return err
	}
	return setDirTimes(upper, root, dirs)
}

func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

func isOpaque(dir string) bool {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(dir, overlayXattrPrefix+"opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}

// mkdirLike makes dir with src's mode, owner and extended attributes.
func mkdirLike(dir, src string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	return copyMeta(dir, src, &st)
}

// copyMeta gives dst src's mode, owner and extended attributes, leaving
// out overlayfs's private ones.
func copyMeta(dst, src string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Chmod(dst, st.Mode&07777); err != nil {
		return err
	}
	names, err := listXattrs(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if strings.HasPrefix(name, overlayXattrPrefix) {
			continue
		}
		val, err := getXattr(src, name)
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, val, 0); err != nil {
			return err
		}
	}
	return nil
}

// setDirTimes copies directory timestamps once their contents are final.
func setDirTimes(src, dst string, dirs []string) error {
	for i := len(dirs) - 1; i >= 0; i-- {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(src, dirs[i]), &st); err != nil {
			return err
		}
		ts := []unix.Timespec{st.Atim, st.Mtim}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dst, dirs[i]), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range strings.Split(string(buf[:size]), "\x00") {
		if n != "" {
			names = append(names, n)
		}
	}
	return names, nil
}

func getXattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Lgetxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:size], nil
}
