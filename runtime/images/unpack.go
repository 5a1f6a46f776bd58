package images

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/mount"
)

// extractPrefix starts the keys of the active snapshots Unpack applies a
// layer in before it commits them under their chain ID.
const extractPrefix = "extract-"

// RemoveUnfinished removes the active snapshots an Unpack interrupted by a
// crash left in driver. Call it before any Unpack on driver runs: the
// daemon does, at start, holding its data root.
func RemoveUnfinished(ctx context.Context, driver drivers.Snapshotter) error {
	var keys []string
	err := driver.Walk(ctx, func(_ context.Context, info drivers.Info) error {
		if strings.HasPrefix(info.Name, extractPrefix) {
			keys = append(keys, info.Name)
		}
		return nil
	}, drivers.Filter{Kind: drivers.KindActive})
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if err := driver.Remove(ctx, k); err != nil {
			errs = append(errs, fmt.Errorf("removing unfinished unpack %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// ChainIDs returns the OCI chain IDs of layers with the given DiffIDs:
// chainID(0) = diffID(0), chainID(n) = sha256(chainID(n-1) + " " + diffID(n)).
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// Unpack makes the layers of image id committed snapshots of driver, each
// named by its chain ID, and returns the top one's name (the parent of a
// container's rootfs). A layer already committed there, by this image or
// another sharing it, is reused. Unpacks of the same chain on the same
// driver are serialized, so concurrent callers unpack each layer once.
func (s *Store) Unpack(ctx context.Context, driver drivers.Snapshotter, id digest.Digest) (string, error) {
	var rec Record
	err := s.db.View(func(tx *bolt.Tx) error {
		r, ok, err := record(tx, id)
		if !ok && err == nil {
			err = noSuchImage(id)
		}
		rec = r
		return err
	})
	if err != nil {
		return "", err
	}
	parent := ""
	for i, chain := range ChainIDs(rec.Layers) {
		key := chain.String()
		if err := s.unpackLayer(ctx, driver, key, parent, rec.Layers[i]); err != nil {
			return "", fmt.Errorf("unpack image %s layer %d: %w", id, i, err)
		}
		parent = key
	}
	return parent, nil
}

// unpackLayer commits layer diffID on parent as key, unless key exists.
func (s *Store) unpackLayer(ctx context.Context, driver drivers.Snapshotter, key, parent string, diffID digest.Digest) error {
	// The driver's identity is part of the lock: another driver's chain
	// of the same ID is independent.
	unlock := s.locks.lock(fmt.Sprintf("%p/%s", driver, key))
	defer unlock()
	if _, err := driver.Stat(ctx, key); err == nil {
		return nil
	} else if !errors.Is(err, drivers.ErrNotFound) {
		return err
	}
	tmp := extractPrefix + randomHex() + "-" + key
	mounts, err := driver.Prepare(ctx, tmp, parent)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			_ = driver.Remove(context.WithoutCancel(ctx), tmp)
		}
	}()
	st, err := s.applyOn(ctx, mounts, diffID)
	if err != nil {
		return err
	}
	if s.applied != nil {
		s.applied(driver, st)
	}
	err = driver.Commit(ctx, key, tmp)
	if errors.Is(err, drivers.ErrAlreadyExists) {
		// Another process sharing the driver committed it first; ours
		// is removed above.
		return nil
	}
	committed = err == nil
	return err
}

// applyOn mounts mounts on a fresh directory, applies the layer blob
// diffID there and unmounts.
func (s *Store) applyOn(ctx context.Context, mounts []drivers.Mount, diffID digest.Digest) (st layer.Stats, err error) {
	dir, err := os.MkdirTemp(s.mntDir(), "unpack-")
	if err != nil {
		return st, err
	}
	// rmdir, never RemoveAll: if the unmount failed, the snapshot is
	// still mounted there and must not be emptied.
	defer func() { err = errors.Join(err, os.Remove(dir)) }()
	if err := mount.All(mounts, dir); err != nil {
		return st, err
	}
	defer func() { err = errors.Join(err, mount.UnmountAll(dir)) }()
	f, err := os.Open(s.blobPath(diffID))
	if err != nil {
		return st, err
	}
	defer f.Close()
	return layer.Apply(ctx, dir, f, layer.WithDiffID(diffID), layer.WithTempDir(s.tmpDir()))
}

func (s *Store) mntDir() string { return filepath.Join(s.root, "mnt") }

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Chains returns the chain IDs every image in the store names: the
// committed layers on the drivers that an image still needs.
func (s *Store) Chains() (map[string]bool, error) {
	out := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			for _, c := range ChainIDs(r.Layers) {
				out[c.String()] = true
			}
			return nil
		})
	})
	return out, err
}
