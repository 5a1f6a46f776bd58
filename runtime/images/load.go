package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers/layer"
)

// The annotations an OCI index names an image by: containerd's (and
// Docker's) full reference, and the OCI tag.
const (
	annotationImageName = "io.containerd.image.name"
)

// Loaded is one image a Load stored, with the ref it was tagged by (empty
// for an image loaded without a name).
type Loaded struct {
	Ref string
	ID  digest.Digest
}

// candidate is an image read from an archive, verified and staged.
type candidate struct {
	refs     []string
	rec      Record
	config   []byte
	manifest []byte // the OCI manifest, when the archive had one
	blobs    map[digest.Digest]string
}

// Load stores the images of a docker-archive (`docker save`) or an OCI
// image layout tar, plain or gzip-compressed. Every layer is checked
// against the config's DiffIDs and applied, in order, to a scratch
// directory, so a layer the drivers would refuse is refused here; nothing
// is recorded unless every image of the archive passes. Refusals wrap
// ErrBadArchive.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]Loaded, error) {
	scratch, err := os.MkdirTemp(s.tmpDir(), "load-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	archive := filepath.Join(scratch, "archive.tar")
	names, err := spool(r, archive)
	if err != nil {
		return nil, err
	}
	var cands []candidate
	switch {
	case names["manifest.json"]:
		cands, err = s.readDockerArchive(ctx, archive, scratch)
	case names["index.json"] && names["oci-layout"]:
		cands, err = s.readOCILayout(ctx, archive, scratch)
	default:
		err = fmt.Errorf("the tar has neither manifest.json (docker-archive) nor index.json and oci-layout (OCI layout): %w", ErrBadArchive)
	}
	if err != nil {
		return nil, err
	}
	return s.commit(cands)
}

// spool copies the archive to path, decompressing gzip, and returns the
// names of its entries.
func spool(r io.Reader, path string) (map[string]bool, error) {
	br := bufio.NewReader(r)
	var src io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w: %w", ErrBadArchive, err)
		}
		defer gz.Close()
		src = gz
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(io.TeeReader(src, f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w: %w", ErrBadArchive, err)
		}
		// No image format needs a name outside the archive; one is
		// hostile whatever refers to it.
		if err := localPath("entry", h.Name); err != nil {
			return nil, err
		}
		names[filepath.Clean(h.Name)] = true
	}
	// The rest (tar padding) is copied so that the spooled file is whole.
	if _, err := io.Copy(f, src); err != nil {
		return nil, fmt.Errorf("reading the archive: %w: %w", ErrBadArchive, err)
	}
	return names, f.Close()
}

// localPath refuses a path in an archive's metadata that leaves the
// archive (absolute, or climbing with "..").
func localPath(what, p string) error {
	if !filepath.IsLocal(p) {
		return fmt.Errorf("%s %q leaves the archive: %w", what, p, ErrBadArchive)
	}
	return nil
}

func (s *Store) readDockerArchive(ctx context.Context, archive, scratch string) ([]candidate, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w: %w", ErrBadArchive, err)
	}
	var out []candidate
	for i, d := range m {
		if err := localPath("manifest.json config", d.Config); err != nil {
			return nil, err
		}
		for _, l := range d.Layers {
			if err := localPath("manifest.json layer", l); err != nil {
				return nil, err
			}
		}
		var tag *name.Tag
		switch {
		case len(d.RepoTags) > 0:
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("manifest.json tag %q: %w: %w", d.RepoTags[0], ErrBadArchive, err)
			}
			tag = &t
		case len(m) > 1:
			return nil, fmt.Errorf("manifest.json entry %d has no RepoTags in an archive of %d images; load it alone: %w", i, len(m), ErrBadArchive)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w: %w", i, ErrBadArchive, err)
		}
		c, err := s.stage(ctx, img, filepath.Join(scratch, fmt.Sprint(i)), nil)
		if err != nil {
			return nil, err
		}
		for _, t := range d.RepoTags {
			ref, err := NormalizeRef(t)
			if err != nil {
				return nil, fmt.Errorf("manifest.json: %w: %w", ErrBadArchive, err)
			}
			c.refs = append(c.refs, ref)
		}
		out = append(out, c)
	}
	return out, nil
}

func (s *Store) readOCILayout(ctx context.Context, archive, scratch string) ([]candidate, error) {
	dir := filepath.Join(scratch, "oci")
	if err := extract(archive, dir); err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w: %w", ErrBadArchive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI index.json: %w: %w", ErrBadArchive, err)
	}
	var out []candidate
	for i, desc := range im.Manifests {
		img, err := pickImage(idx, desc)
		if err != nil {
			return nil, err
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, fmt.Errorf("OCI manifest %s: %w: %w", desc.Digest, ErrBadArchive, err)
		}
		c, err := s.stage(ctx, img, filepath.Join(scratch, fmt.Sprint(i)), raw)
		if err != nil {
			return nil, err
		}
		if n := desc.Annotations[annotationImageName]; n != "" {
			ref, err := NormalizeRef(n)
			if err != nil {
				return nil, fmt.Errorf("index.json: %w: %w", ErrBadArchive, err)
			}
			c.refs = append(c.refs, ref)
		}
		out = append(out, c)
	}
	return out, nil
}

// pickImage returns the image desc names, choosing this machine's platform
// from a nested index.
func pickImage(idx v1.ImageIndex, desc v1.Descriptor) (v1.Image, error) {
	if !desc.MediaType.IsIndex() {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("OCI manifest %s: %w: %w", desc.Digest, ErrBadArchive, err)
		}
		return img, nil
	}
	child, err := idx.ImageIndex(desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("OCI index %s: %w: %w", desc.Digest, ErrBadArchive, err)
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("OCI index %s: %w: %w", desc.Digest, ErrBadArchive, err)
	}
	for _, d := range cm.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
			return pickImage(child, d)
		}
	}
	return nil, fmt.Errorf("OCI index %s has no linux/%s image: %w", desc.Digest, runtime.GOARCH, ErrBadArchive)
}

// extract unpacks the OCI layout tar into dir: directories and regular
// files only, every name inside dir, every blob's content matching its
// name (so a blob whose digest does not match is refused here).
func extract(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("OCI layout: %w: %w", ErrBadArchive, err)
		}
		if err := localPath("entry", h.Name); err != nil {
			return err
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeChecked(p, tr, h.Name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("OCI layout entry %q is not a file or directory: %w", h.Name, ErrBadArchive)
		}
	}
}

// writeChecked writes r to p; under blobs/sha256/ the content must hash
// to the file's name.
func writeChecked(p string, r io.Reader, entry string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("OCI layout entry %q: %w: %w", entry, ErrBadArchive, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		return err
	}
	if filepath.Dir(filepath.Clean(entry)) == filepath.Join("blobs", "sha256") {
		if got := hex.EncodeToString(h.Sum(nil)); got != filepath.Base(entry) {
			return fmt.Errorf("blob %s holds content with digest sha256:%s: %w", entry, got, ErrBadArchive)
		}
	}
	return f.Close()
}

// stage verifies img and writes its config and layers as blobs under dir:
// each layer must hash to the DiffID the config names and apply, on top of
// the ones before it, to a scratch root.
func (s *Store) stage(ctx context.Context, img v1.Image, dir string, manifest []byte) (candidate, error) {
	c := candidate{manifest: manifest, blobs: map[digest.Digest]string{}}
	raw, err := img.RawConfigFile()
	if err != nil {
		return c, fmt.Errorf("image config: %w: %w", ErrBadArchive, err)
	}
	c.config = raw
	id := digest.FromBytes(raw)
	if manifest != nil {
		m, err := img.Manifest()
		if err != nil {
			return c, fmt.Errorf("manifest: %w: %w", ErrBadArchive, err)
		}
		if m.Config.Digest.String() != id.String() {
			return c, fmt.Errorf("config has digest %s, the manifest names %s: %w", id, m.Config.Digest, ErrBadArchive)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return c, fmt.Errorf("image config: %w: %w", ErrBadArchive, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return c, fmt.Errorf("image layers: %w: %w", ErrBadArchive, err)
	}
	if len(layers) != len(cfg.RootFS.DiffIDs) {
		return c, fmt.Errorf("%d layers for %d DiffIDs in the config: %w", len(layers), len(cfg.RootFS.DiffIDs), ErrBadArchive)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return c, err
	}
	c.rec = Record{ID: id, Loaded: time.Now().UTC()}
	for i, l := range layers {
		want, err := digest.Parse(cfg.RootFS.DiffIDs[i].String())
		if err != nil {
			return c, fmt.Errorf("DiffID %d: %w: %w", i, ErrBadArchive, err)
		}
		blob := filepath.Join(dir, "layer-"+fmt.Sprint(i))
		size, err := writeLayer(l, blob, want)
		if err != nil {
			return c, err
		}
		f, err := os.Open(blob)
		if err != nil {
			return c, err
		}
		_, err = layer.Apply(ctx, rootfs, f, layer.WithDiffID(want), layer.WithTempDir(dir))
		f.Close()
		if err != nil {
			return c, fmt.Errorf("layer %d (%s): %w: %w", i, want, ErrBadArchive, err)
		}
		c.rec.Layers = append(c.rec.Layers, want)
		c.rec.Size += size
		c.blobs[want] = blob
	}
	return c, nil
}

// writeLayer writes the layer's uncompressed tar to path and checks that
// it hashes to want.
func writeLayer(l v1.Layer, path string, want digest.Digest) (int64, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w: %w", want, ErrBadArchive, err)
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	v := want.Algorithm().Digester()
	n, err := io.Copy(io.MultiWriter(f, v.Hash()), rc)
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w: %w", want, ErrBadArchive, err)
	}
	if got := v.Digest(); got != want {
		return 0, fmt.Errorf("layer content has DiffID %s, the config names %s: %w", got, want, ErrBadArchive)
	}
	return n, f.Close()
}

// commit moves the staged blobs into place and records every image and
// ref in one transaction: a failure before it leaves no record, and blobs
// without a record are only unused files.
func (s *Store) commit(cands []candidate) ([]Loaded, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range cands {
		c := &cands[i]
		if err := writeBlob(s.blobPath(c.rec.ID), c.config); err != nil {
			return nil, err
		}
		if c.manifest != nil {
			c.rec.Manifest = digest.FromBytes(c.manifest)
			if err := writeBlob(s.blobPath(c.rec.Manifest), c.manifest); err != nil {
				return nil, err
			}
		}
		for d, p := range c.blobs {
			if err := os.Rename(p, s.blobPath(d)); err != nil {
				return nil, err
			}
		}
	}
	var out []Loaded
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = nil
		for _, c := range cands {
			if old, ok, err := record(tx, c.rec.ID); err != nil {
				return err
			} else if ok {
				c.rec.Loaded = old.Loaded // a reload keeps the first load's time
			}
			if err := putRecord(tx, c.rec); err != nil {
				return err
			}
			for _, ref := range c.refs {
				if err := tx.Bucket(bucketRefs).Put([]byte(ref), []byte(c.rec.ID)); err != nil {
					return err
				}
				out = append(out, Loaded{Ref: ref, ID: c.rec.ID})
			}
			if len(c.refs) == 0 {
				out = append(out, Loaded{ID: c.rec.ID})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// writeBlob writes data as the blob at path unless it is already there
// (the name is its digest, so an existing file holds the same bytes).
func writeBlob(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
