package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers/layer"
)

// bucketBlobs maps a layer's DiffID to the registry blobs it is known as
// (JSON []Blob), so a push skips or mounts instead of uploading again.
var bucketBlobs = []byte("layer-blobs")

// Blob is a layer as a registry repository holds it (compressed). It has
// registry.Blob's fields, so the daemon converts one to the other; the
// store does not import the registry client.
type Blob struct {
	Registry  string `json:"registry"`
	Repo      string `json:"repo"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"`
}

// Progress hears a pull's steps per layer, in dockerd's words.
type Progress func(id, status string, current, total int64)

// Pulled is what a Pull stored.
type Pulled struct {
	ID    digest.Digest
	Fresh bool // the name pulled did not name this image before
}

// Pull stores an image a registry served: img's layers as blobs[i] (its
// manifest's descriptors) are downloaded (go-containerregistry checks
// each blob's digest), decompressed and checked against the config's
// DiffIDs, and applied in order to a scratch root as Load does. A layer
// whose DiffID the store holds is not fetched ("Already exists"). refs
// (normal form) are pointed at the image, and the blobs remembered.
func (s *Store) Pull(ctx context.Context, img v1.Image, refs []string, blobs []Blob, progress Progress) (Pulled, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return Pulled{}, fmt.Errorf("manifest: %w", err)
	}
	scratch, err := os.MkdirTemp(s.tmpDir(), "pull-")
	if err != nil {
		return Pulled{}, err
	}
	defer os.RemoveAll(scratch)
	c := candidate{refs: refs, manifest: manifest, blobs: map[digest.Digest]string{}}
	if c.config, err = img.RawConfigFile(); err != nil {
		return Pulled{}, fmt.Errorf("image config: %w", err)
	}
	id := digest.FromBytes(c.config)
	m, err := img.Manifest()
	if err != nil {
		return Pulled{}, fmt.Errorf("manifest: %w: %w", ErrBadArchive, err)
	}
	if m.Config.Digest.String() != id.String() {
		return Pulled{}, fmt.Errorf("config has digest %s, the manifest names %s: %w", id, m.Config.Digest, ErrBadArchive)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return Pulled{}, fmt.Errorf("image config: %w: %w", ErrBadArchive, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return Pulled{}, fmt.Errorf("image layers: %w", err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) || len(layers) != len(blobs) {
		return Pulled{}, fmt.Errorf("%d layers in the manifest for %d DiffIDs in the config: %w", len(layers), len(cfg.RootFS.DiffIDs), ErrBadArchive)
	}
	// As dockerd says: "newer" when the name did not already mean this image.
	fresh := true
	if len(refs) > 0 {
		if cur, err := s.Resolve(refs[0]); err == nil && cur == id {
			fresh = false
		}
	}
	want := make([]digest.Digest, len(layers))
	have := make([]bool, len(layers))
	for i := range layers {
		if want[i], err = digest.Parse(cfg.RootFS.DiffIDs[i].String()); err != nil {
			return Pulled{}, fmt.Errorf("DiffID %d: %w: %w", i, ErrBadArchive, err)
		}
		_, err := os.Stat(s.blobPath(want[i]))
		have[i] = err == nil
		if have[i] {
			progress(short(blobs[i].Digest), "Already exists", 0, 0)
		} else {
			progress(short(blobs[i].Digest), "Pulling fs layer", 0, 0)
		}
	}
	rootfs := filepath.Join(scratch, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return Pulled{}, err
	}
	c.rec = Record{ID: id, Loaded: time.Now().UTC()}
	for i, l := range layers {
		sid := short(blobs[i].Digest)
		path := s.blobPath(want[i])
		if !have[i] {
			path = filepath.Join(scratch, fmt.Sprint("layer-", i))
			if err := fetchLayer(l, scratch, path, want[i], blobs[i].Size, func(st string, cur, total int64) { progress(sid, st, cur, total) }); err != nil {
				return Pulled{}, err
			}
			c.blobs[want[i]] = path
		}
		f, err := os.Open(path)
		if err != nil {
			return Pulled{}, err
		}
		_, err = layer.Apply(ctx, rootfs, f, layer.WithDiffID(want[i]), layer.WithTempDir(scratch))
		fi, _ := f.Stat()
		f.Close()
		if err != nil {
			return Pulled{}, fmt.Errorf("layer %d (%s): %w: %w", i, want[i], ErrBadArchive, err)
		}
		c.rec.Layers = append(c.rec.Layers, want[i])
		c.rec.Size += fi.Size()
		if !have[i] {
			progress(sid, "Pull complete", 0, 0)
		}
	}
	if _, err := s.commit([]candidate{c}); err != nil {
		return Pulled{}, err
	}
	if err := s.AddBlobs(want, blobs); err != nil {
		return Pulled{}, err
	}
	return Pulled{ID: id, Fresh: fresh}, nil
}

// fetchLayer downloads l's compressed blob ("Downloading", checked
// against its digest as it is read), then decompresses it into path,
// checking the DiffID ("Extracting").
func fetchLayer(l v1.Layer, scratch, path string, want digest.Digest, size int64, progress func(string, int64, int64)) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("layer %s: %w", want, err)
	}
	tmp := path + ".download"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		rc.Close()
		return err
	}
	_, err = io.Copy(f, &counter{r: rc, total: size, status: "Downloading", report: progress})
	rc.Close() // go-containerregistry's verifying reader fails the read on a digest mismatch
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", want, err)
	}
	defer os.Remove(tmp)
	progress("Verifying Checksum", 0, 0)
	progress("Download complete", 0, 0)
	opener := func() (io.ReadCloser, error) {
		f, err := os.Open(tmp)
		if err != nil {
			return nil, err
		}
		return readCloser{&counter{r: f, total: size, status: "Extracting", report: progress}, f}, nil
	}
	local, err := tarball.LayerFromOpener(opener)
	if err != nil {
		return fmt.Errorf("layer %s: %w: %w", want, ErrBadArchive, err)
	}
	_, err = writeLayer(local, path, want)
	return err
}

// counter reports the bytes read through it, at most every 100 ms and at
// the end.
type counter struct {
	r      io.Reader
	n      int64
	total  int64
	status string
	last   time.Time
	report func(string, int64, int64)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if now := time.Now(); now.Sub(c.last) > 100*time.Millisecond || (err == io.EOF && c.n > 0) {
		c.last = now
		c.report(c.status, c.n, c.total)
	}
	return n, err
}

type readCloser struct {
	io.Reader
	io.Closer
}

// short is the 12 hex digits dockerd's progress names a layer by.
func short(d string) string {
	if dg, err := digest.Parse(d); err == nil && len(dg.Encoded()) >= 12 {
		return dg.Encoded()[:12]
	}
	return d
}

// recordOf reads the record of id, if there is one.
func (s *Store) recordOf(id digest.Digest) (Record, bool, error) {
	var r Record
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		r, ok, err = record(tx, id)
		return err
	})
	return r, ok, err
}

// AddBlobs remembers that the layer diffIDs[i] is blobs[i].
func (s *Store) AddBlobs(diffIDs []digest.Digest, blobs []Blob) error {
	if len(diffIDs) != len(blobs) {
		return fmt.Errorf("%d layers for %d blobs", len(diffIDs), len(blobs))
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketBlobs)
		if err != nil {
			return err
		}
		for i, d := range diffIDs {
			var known []Blob
			if v := b.Get([]byte(d)); v != nil {
				if err := json.Unmarshal(v, &known); err != nil {
					return fmt.Errorf("blobs of layer %s: %w", d, err)
				}
			}
			add := blobs[i]
			dup := false
			for _, k := range known {
				dup = dup || (k.Registry == add.Registry && k.Repo == add.Repo && k.Digest == add.Digest)
			}
			if dup {
				continue
			}
			// The newest first; a layer is rarely in many repositories,
			// but the list stays bounded.
			known = append([]Blob{add}, known...)
			if len(known) > 16 {
				known = known[:16]
			}
			v, err := json.Marshal(known)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(d), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// PushLayer is a stored layer as a push needs it.
type PushLayer struct {
	DiffID digest.Digest
	Path   string // the uncompressed tar
	Known  []Blob
}

// PushSource returns what pushing the image nameOrID names takes: its ID,
// its config bytes and its layers with the blobs they are known as.
func (s *Store) PushSource(nameOrID string) (digest.Digest, []byte, []PushLayer, error) {
	var rec Record
	var layers []PushLayer
	err := s.db.View(func(tx *bolt.Tx) error {
		id, _, err := resolve(tx, nameOrID)
		if err != nil {
			return err
		}
		r, ok, err := record(tx, id)
		if err != nil {
			return err
		}
		if !ok {
			return noSuchImage(nameOrID)
		}
		rec = r
		b := tx.Bucket(bucketBlobs)
		for _, d := range r.Layers {
			pl := PushLayer{DiffID: d, Path: s.blobPath(d)}
			if b != nil {
				if v := b.Get([]byte(d)); v != nil {
					if err := json.Unmarshal(v, &pl.Known); err != nil {
						return fmt.Errorf("blobs of layer %s: %w", d, err)
					}
				}
			}
			layers = append(layers, pl)
		}
		return nil
	})
	if err != nil {
		return "", nil, nil, err
	}
	config, err := os.ReadFile(s.blobPath(rec.ID))
	if err != nil {
		return "", nil, nil, fmt.Errorf("config of image %s: %w", rec.ID, err)
	}
	return rec.ID, config, layers, nil
}

// AddRef points a ref in normal form (a tag or a repo@digest) at id.
func (s *Store) AddRef(id digest.Digest, ref string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if _, ok, err := record(tx, id); err != nil {
			return err
		} else if !ok {
			return noSuchImage(id)
		}
		return tx.Bucket(bucketRefs).Put([]byte(ref), []byte(id))
	})
}

// RefsOf returns the tag refs of repo (familiar form) and the images
// they name.
func (s *Store) RefsOf(repo string) (map[string]digest.Digest, error) {
	out := map[string]digest.Digest{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
			if r := string(k); !strings.Contains(r, "@") && refRepo(r) == repo {
				out[r] = digest.Digest(v)
			}
			return nil
		})
	})
	if err == nil && len(out) == 0 {
		return nil, noSuchImage(repo)
	}
	return out, err
}
