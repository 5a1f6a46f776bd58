package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

// stored is an image of the store as go-containerregistry sees it: its
// config blob and its layers, uncompressed, by DiffID.
type stored struct {
	s   *Store
	rec Record
	raw []byte
}

func (i *stored) RawConfigFile() ([]byte, error)      { return i.raw, nil }
func (i *stored) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (i *stored) LayerByDiffID(h v1.Hash) (partial.UncompressedLayer, error) {
	for _, d := range i.rec.Layers {
		if d.String() == h.String() {
			return &storedLayer{path: i.s.blobPath(d), diffID: h}, nil
		}
	}
	return nil, fmt.Errorf("image %s has no layer %s: %w", i.rec.ID, h, ErrNoSuchImage)
}

type storedLayer struct {
	path   string
	diffID v1.Hash
}

func (l *storedLayer) DiffID() (v1.Hash, error)             { return l.diffID, nil }
func (l *storedLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *storedLayer) MediaType() (types.MediaType, error)  { return types.OCILayer, nil }

// image returns the stored image id as a v1.Image.
func (s *Store) image(rec Record) (v1.Image, error) {
	raw, err := os.ReadFile(s.blobPath(rec.ID))
	if err != nil {
		return nil, fmt.Errorf("config of image %s: %w", rec.ID, err)
	}
	return partial.UncompressedToImage(&stored{s: s, rec: rec, raw: raw})
}

// saved is one image Save writes and the refs it carries.
type saved struct {
	img  v1.Image
	id   digest.Digest
	refs []string
}

// Save writes the images names name as a docker-archive (manifest.json)
// that is also an OCI image layout (index.json, oci-layout, blobs/), as
// Docker >= 25 writes them, so both docker and OCI tools load it. A name
// that is a ref carries that ref; an ID carries none, as with docker.
func (s *Store) Save(ctx context.Context, w io.Writer, names []string) error {
	var list []*saved
	byID := map[digest.Digest]*saved{}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, n := range names {
			id, ref, err := resolve(tx, n)
			if err != nil {
				return err
			}
			sv := byID[id]
			if sv == nil {
				rec, _, err := record(tx, id)
				if err != nil {
					return err
				}
				img, err := s.image(rec)
				if err != nil {
					return err
				}
				sv = &saved{img: img, id: id}
				byID[id] = sv
				list = append(list, sv)
			}
			// A digest ref is no tag: an image saved by digest goes
			// without a name, as dockerd saves it.
			if ref != "" && !strings.Contains(ref, "@") {
				sv.refs = append(sv.refs, ref)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(s.tmpDir(), "save-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeLayout(dir, list); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		return fmt.Errorf("writing the archive: %w", err)
	}
	return tw.Close()
}

// writeLayout writes the OCI layout and manifest.json for list into dir.
func writeLayout(dir string, list []*saved) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	var manifest tarball.Manifest
	for _, sv := range list {
		var opts [][]layout.Option
		for _, ref := range sv.refs {
			t, err := name.NewTag(ref)
			if err != nil {
				return err
			}
			opts = append(opts, []layout.Option{layout.WithAnnotations(map[string]string{
				annotationImageName:       fullRef(t),
				ocispec.AnnotationRefName: t.TagStr(),
			})})
		}
		if len(opts) == 0 {
			opts = append(opts, nil)
		}
		for _, o := range opts {
			if err := p.AppendImage(sv.img, o...); err != nil {
				return fmt.Errorf("writing image %s: %w", sv.id, err)
			}
		}
		d := tarball.Descriptor{Config: blobName(sv.id.String()), RepoTags: sv.refs}
		layers, err := sv.img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			h, err := l.Digest()
			if err != nil {
				return err
			}
			d.Layers = append(d.Layers, blobName(h.String()))
		}
		manifest = append(manifest, d)
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o644)
}

// fullRef is the reference containerd and Docker name an image by in an
// OCI index: docker.io/library/busybox:latest.
func fullRef(t name.Tag) string {
	reg := t.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + t.RepositoryStr() + ":" + t.TagStr()
}

// blobName is where an OCI layout keeps the blob of digest d.
func blobName(d string) string {
	return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:")
}
