package layer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/pkg/archive"
	continuityfs "github.com/containerd/continuity/fs"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// DiffSnapshot writes to w the layer tar of what the snapshot key changed
// on top of its parent, on any driver. A driver that keeps each snapshot's
// changes apart (drivers.Differ: overlay and overlay2 keep an upper
// directory) is read directly; a driver that can list them
// (drivers.ChangeWalker: btrfs through btrfs send) is asked for them; every
// other driver, or a snapshot its
// driver has no record for, is diffed by mounting views of the snapshot
// and of its parent and comparing them as Diff does. Both give layers that
// make the same tree when applied on the parent; they may differ in form
// (an opaque marker where the walk writes one whiteout per old child).
// key may be committed, active (mounted a second time, read only by the
// diff) or a view.
func DiffSnapshot(ctx context.Context, w io.Writer, sn drivers.Snapshotter, key string, opts ...DiffOption) (Digests, error) {
	if dr, ok := sn.(drivers.Differ); ok {
		ch, err := dr.Changes(ctx, key)
		switch {
		case err == nil && ch.Format == drivers.ChangesOverlay:
			return writeLayer(w, opts, func(tw io.Writer) error {
				return DiffOverlayUpper(ctx, tw, ch.Dir, ch.Lowers)
			})
		case err != nil && !errors.Is(err, drivers.ErrNotImplemented):
			return Digests{}, fmt.Errorf("diff snapshot %q: %w", key, err)
		}
	}
	if cw, ok := sn.(drivers.ChangeWalker); ok {
		// The layer writer is made at start, so a driver that cannot
		// walk (it says so before start) leaves w untouched for the views.
		var lw *layerWriter
		var chw *archive.ChangeWriter
		start := func(root string) (err error) {
			if lw, err = newLayerWriter(w, opts); err == nil {
				chw = archive.NewChangeWriter(lw.in, root)
			}
			return err
		}
		err := cw.WalkChanges(ctx, key, start, func(k drivers.ChangeKind, p string, fi os.FileInfo) error {
			return chw.HandleChange(changeKind(k), p, fi, nil)
		})
		if err == nil {
			err = chw.Close()
		}
		switch {
		case lw == nil && errors.Is(err, drivers.ErrNotImplemented):
		case err != nil:
			if lw != nil {
				lw.abort()
			}
			return Digests{}, fmt.Errorf("diff snapshot %q: %w", key, err)
		default:
			return lw.finish()
		}
	}
	return diffViews(ctx, w, sn, key, opts)
}

// changeKind is continuity's name for a change kind, which ChangeWriter
// takes.
func changeKind(k drivers.ChangeKind) continuityfs.ChangeKind {
	switch k {
	case drivers.ChangeAdd:
		return continuityfs.ChangeKindAdd
	case drivers.ChangeDelete:
		return continuityfs.ChangeKindDelete
	default:
		return continuityfs.ChangeKindModify
	}
}

// diffViews is DiffSnapshot's generic path: the snapshot and its parent
// mounted under a temporary directory, compared by Diff, then unmounted
// and their temporary views removed whatever happened.
func diffViews(ctx context.Context, w io.Writer, sn drivers.Snapshotter, key string, opts []DiffOption) (_ Digests, err error) {
	info, err := sn.Stat(ctx, key)
	if err != nil {
		return Digests{}, fmt.Errorf("diff snapshot %q: %w", key, err)
	}
	tmp, err := os.MkdirTemp("", "layerlab-diff-")
	if err != nil {
		return Digests{}, fmt.Errorf("diff snapshot %q: %w", key, err)
	}
	var undo []func() error
	defer func() {
		for i := len(undo) - 1; i >= 0; i-- {
			err = errors.Join(err, undo[i]())
		}
		err = errors.Join(err, os.Remove(tmp))
	}()
	suffix := make([]byte, 8)
	if _, err := rand.Read(suffix); err != nil {
		return Digests{}, err
	}
	// mountAt mounts what mk returns at tmp/name, with the temporary view
	// view (if any) removed after the unmount.
	mountAt := func(name, view string, mk func() ([]drivers.Mount, error)) (string, error) {
		ms, err := mk()
		if err != nil {
			return "", err
		}
		if view != "" {
			undo = append(undo, func() error { return sn.Remove(context.WithoutCancel(ctx), view) })
		}
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return "", err
		}
		undo = append(undo, func() error { return os.Remove(dir) })
		if err := mount.All(ms, dir); err != nil {
			return "", err
		}
		undo = append(undo, func() error { return mount.UnmountAll(dir) })
		return dir, nil
	}
	viewOf := func(name, of string) (string, error) {
		view := fmt.Sprintf("layerlab-diff-%s-%s", hex.EncodeToString(suffix), name)
		return mountAt(name, view, func() ([]drivers.Mount, error) { return sn.View(ctx, view, of) })
	}
	var upper, lower string
	if info.Kind == drivers.KindCommitted {
		upper, err = viewOf("upper", key)
	} else {
		upper, err = mountAt("upper", "", func() ([]drivers.Mount, error) { return sn.Mounts(ctx, key) })
	}
	if err == nil && info.Parent != "" {
		lower, err = viewOf("lower", info.Parent)
	}
	if err != nil {
		return Digests{}, fmt.Errorf("diff snapshot %q: mount it and its parent: %w", key, err)
	}
	return Diff(ctx, w, lower, upper, opts...)
}
