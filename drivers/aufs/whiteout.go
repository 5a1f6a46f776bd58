package aufs

import (
	"context"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// Whiteout names (AUFS_WH_PFX, AUFS_WH_DIROPQ in aufs_type.h), the same
// the OCI image layer format uses for deletions in a layer diff.
const (
	// WhiteoutPrefix before a name hides that name in lower branches.
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts aufs's own bookkeeping names: the
	// whiteout base .wh..wh.aufs, the pseudo-link directory .wh..wh.plnk
	// and the orphan directory .wh..wh.orph in a writable branch's root.
	WhiteoutMetaPrefix = WhiteoutPrefix + WhiteoutPrefix
	// WhiteoutOpaque inside a directory hides everything lower branches
	// have in it.
	WhiteoutOpaque = WhiteoutMetaPrefix + ".opq"
)

// WhiteoutKind says what a .wh. entry does.
type WhiteoutKind uint8

// The kinds of .wh. entries.
const (
	// KindWhiteout hides one name of the lower branches.
	KindWhiteout WhiteoutKind = iota + 1
	// KindOpaque hides a directory's lower contents.
	KindOpaque
	// KindMeta is aufs bookkeeping (or a bare .wh., which hides nothing),
	// no part of the layer: an export drops
	// it (dockerd excluded .wh..wh.* but the opaque marker from diffs).
	// Hardlinks aufs copied up live in .wh..wh.plnk until auplink flushes
	// them, which nothing in layerlab runs.
	KindMeta
)

func (k WhiteoutKind) String() string {
	switch k {
	case KindWhiteout:
		return "whiteout"
	case KindOpaque:
		return "opaque"
	case KindMeta:
		return "aufs-meta"
	}
	return "unknown"
}

// Whiteout is one .wh. entry of a branch.
type Whiteout struct {
	Kind WhiteoutKind
	// Path is the entry itself, slash-separated and relative to the
	// branch root.
	Path string
	// Target is what it hides: the hidden path for KindWhiteout, the
	// directory (. for the root) for KindOpaque, empty for KindMeta.
	Target string
}

// Whiteouts lists the .wh. entries of the branch directory in lexical
// order, without descending into aufs's bookkeeping directories.
func Whiteouts(ctx context.Context, branch string) ([]Whiteout, error) {
	var out []Whiteout
	err := filepath.WalkDir(branch, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := d.Name()
		if p == branch || !strings.HasPrefix(name, WhiteoutPrefix) {
			return nil
		}
		rel, err := filepath.Rel(branch, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dir := path.Dir(rel)
		switch {
		case name == WhiteoutOpaque:
			out = append(out, Whiteout{Kind: KindOpaque, Path: rel, Target: dir})
		case strings.HasPrefix(name, WhiteoutMetaPrefix), name == WhiteoutPrefix:
			out = append(out, Whiteout{Kind: KindMeta, Path: rel})
			if d.IsDir() {
				return fs.SkipDir
			}
		default:
			out = append(out, Whiteout{Kind: KindWhiteout, Path: rel, Target: path.Join(dir, strings.TrimPrefix(name, WhiteoutPrefix))})
		}
		return nil
	})
	return out, err
}
