package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
)

// NewImage is an image Create makes: a parent's layers (none for an
// import) and one new layer on top, or none (a build's metadata step).
type NewImage struct {
	Parent digest.Digest // "" for an image of the one layer (import)
	// Layer is the new layer's uncompressed tar, a file under the store's
	// temporary directory (TempFile); Create moves it into the store.
	// Empty: the image adds no layer, and its history entry says so
	// (empty_layer), as a build's ENV or CMD step.
	Layer  string
	DiffID digest.Digest
	// Config is the OCI config with what Docker's adds (HEALTHCHECK,
	// ONBUILD, SHELL).
	Config dockerspec.DockerOCIImageConfig
	// BuildKey is the build cache's key of the step that made the image
	// from Parent (see Child); empty for other images.
	BuildKey  string
	Author    string
	Comment   string
	CreatedBy string
	Ref       string // tagged when not empty
}

// TempFile makes a file in the store's temporary directory, on the blobs'
// filesystem, where a layer for Create is written.
func (s *Store) TempFile(pattern string) (*os.File, error) {
	return os.CreateTemp(s.tmpDir(), pattern)
}

// TempDir is the store's temporary directory, emptied when the store
// opens: scratch space that a crash cannot leak (a build's context).
func (s *Store) TempDir() string { return s.tmpDir() }

// emptyLayer is the DiffID of a tar with no entry (its two zero blocks):
// what the diff of a container that changed nothing is.
const emptyLayer = digest.Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

// Create records the image n describes and returns its ID: its config
// lists the parent's DiffIDs and history plus the new layer's, with the
// config given, as `docker commit` and `docker import` make them.
func (s *Store) Create(n NewImage) (digest.Digest, error) {
	ref := ""
	if n.Ref != "" {
		var err error
		if ref, err = NormalizeRef(n.Ref); err != nil {
			return "", err
		}
	}
	// A child whose layer holds nothing adds none, as dockerd's commit and
	// build make it (a WORKDIR that was there, RUN true): history only.
	empty := n.Layer == "" || (n.Parent != "" && n.DiffID == emptyLayer)
	var layerSize int64
	if !empty {
		if err := n.DiffID.Validate(); err != nil {
			return "", fmt.Errorf("layer DiffID %q: %w: %w", n.DiffID, err, drivers.ErrInvalidArgument)
		}
		fi, err := os.Stat(n.Layer)
		if err != nil {
			return "", err
		}
		layerSize = fi.Size()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UTC()
	img := dockerspec.DockerOCIImage{Image: ocispec.Image{Created: &now, Author: n.Author, Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}}}
	var parent Record
	if n.Parent != "" {
		var e entry
		err := s.db.View(func(tx *bolt.Tx) (err error) {
			e, err = s.entry(tx, n.Parent)
			return err
		})
		if err != nil {
			return "", err
		}
		parent = e.rec
		img.Platform = e.config.Platform
		img.History = e.config.History
		img.RootFS.DiffIDs = append([]digest.Digest(nil), parent.Layers...)
	}
	img.Config = n.Config
	img.RootFS.Type = "layers"
	layers := append([]digest.Digest(nil), parent.Layers...)
	if !empty {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, n.DiffID)
		layers = append(layers, n.DiffID)
	}
	if !empty || n.Parent != "" || n.CreatedBy != "" {
		img.History = append(img.History, ocispec.History{Created: &now, CreatedBy: n.CreatedBy, Author: n.Author, Comment: n.Comment, EmptyLayer: empty})
	} // else a build's scratch base: no layer, no step

	raw, err := json.Marshal(img)
	if err != nil {
		return "", err
	}
	rec := Record{
		ID: digest.FromBytes(raw), Layers: layers, Size: parent.Size + layerSize, Loaded: now,
		Parent: n.Parent, BuildKey: n.BuildKey,
	}
	if err := writeBlob(s.blobPath(rec.ID), raw); err != nil {
		return "", err
	}
	if empty {
		// No layer to move into place; an empty one given goes.
		if n.Layer != "" {
			if err := os.Remove(n.Layer); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
		}
	} else if _, err := os.Stat(s.blobPath(n.DiffID)); err == nil {
		// The same layer is stored already (an identical commit).
		if err := os.Remove(n.Layer); err != nil {
			return "", err
		}
	} else if err := os.Rename(n.Layer, s.blobPath(n.DiffID)); err != nil {
		return "", err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if n.Parent != "" {
			// The parent may have gone while the layer was written: the
			// layers are kept now, but its config is what was read.
			if _, ok, err := record(tx, n.Parent); err != nil {
				return err
			} else if !ok {
				return noSuchImage(n.Parent)
			}
		}
		if err := putRecord(tx, rec); err != nil {
			return err
		}
		if ref != "" {
			return tx.Bucket(bucketRefs).Put([]byte(ref), []byte(rec.ID))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return rec.ID, nil
}

// Import makes a one-layer image of a root filesystem tar, plain or
// gzip-compressed (`docker import`). The tar must be a layer the drivers
// accept: it is applied to a scratch directory first, as Load checks its
// layers, and refused with ErrBadArchive otherwise.
func (s *Store) Import(ctx context.Context, r io.Reader, n NewImage) (digest.Digest, error) {
	scratch, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return "", fmt.Errorf("gzip: %w: %w", ErrBadArchive, err)
		}
		defer gz.Close()
		src = gz
	}
	blob := filepath.Join(scratch, "layer.tar")
	f, err := os.OpenFile(blob, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	v := digest.Canonical.Digester()
	if _, err := io.Copy(io.MultiWriter(f, v.Hash()), src); err != nil {
		f.Close()
		return "", fmt.Errorf("reading the tar: %w: %w", ErrBadArchive, err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	n.DiffID = v.Digest()
	rootfs := filepath.Join(scratch, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return "", err
	}
	lf, err := os.Open(blob)
	if err != nil {
		return "", err
	}
	_, err = layer.Apply(ctx, rootfs, lf, layer.WithDiffID(n.DiffID), layer.WithTempDir(scratch))
	lf.Close()
	if err != nil {
		if errors.Is(err, drivers.ErrInvalidArgument) {
			return "", fmt.Errorf("the imported tar: %w: %w", ErrBadArchive, err)
		}
		return "", err
	}
	// scratch is under the store's temporary directory, so Create moves
	// the layer into place by rename.
	n.Layer = blob
	return s.Create(n)
}

// Paths returns every path (with a leading "/") of image id's tree: its
// layers read in order, their whiteouts applied. Only the tar headers are
// read.
func (s *Store) Paths(id digest.Digest) (map[string]bool, error) {
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
		return nil, err
	}
	tree := map[string]bool{}
	for _, d := range rec.Layers {
		if err := s.layerPaths(d, tree); err != nil {
			return nil, fmt.Errorf("layer %s of image %s: %w", d, id, err)
		}
	}
	return tree, nil
}

func (s *Store) layerPaths(d digest.Digest, tree map[string]bool) error {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	return WalkLayer(f, func(p string, whiteout, opaque bool) {
		switch {
		case opaque:
			removeBelow(tree, p)
		case whiteout:
			delete(tree, p)
			removeBelow(tree, p)
		default:
			tree[p] = true
		}
	})
}

// removeBelow deletes every path under dir from tree.
func removeBelow(tree map[string]bool, dir string) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	for p := range tree {
		if strings.HasPrefix(p, prefix) {
			delete(tree, p)
		}
	}
}

// WalkLayer calls fn for each entry of a layer tar with its path (leading
// "/", cleaned): a whiteout with the path it deletes, an opaque marker
// with its directory.
func WalkLayer(r io.Reader, fn func(p string, whiteout, opaque bool)) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		dir, base := path.Split(p)
		switch {
		case base == ".wh..wh..opq":
			fn(path.Clean(dir), false, true)
		case strings.HasPrefix(base, ".wh."):
			fn(path.Join(dir, strings.TrimPrefix(base, ".wh.")), true, false)
		case p != "/":
			fn(p, false, false)
		}
	}
}

// BlobBytes is the size of every blob the store holds, which a prune
// measures before and after to say what it reclaimed.
func (s *Store) BlobBytes() int64 {
	entries, err := os.ReadDir(s.blobDir())
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range entries {
		if fi, err := e.Info(); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Child returns the newest image made from parent by the build step key:
// the build cache's hit. Intermediate images are ordinary (dangling)
// images that know their parent and step, so the cache is what the store
// holds, and a prune of dangling images empties it.
func (s *Store) Child(parent digest.Digest, key string) (digest.Digest, bool) {
	var found Record
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) == nil && r.Parent == parent && r.BuildKey == key && r.Loaded.After(found.Loaded) {
				found = r
			}
			return nil
		})
	})
	return found.ID, found.ID != ""
}

// BuildCache returns the untagged images a build step made: the build
// cache that `docker builder prune` empties.
func (s *Store) BuildCache() []digest.Digest {
	var out []digest.Digest
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) == nil && r.BuildKey != "" && len(tagsOf(tx, r.ID)) == 0 {
				out = append(out, r.ID)
			}
			return nil
		})
	})
	return out
}
