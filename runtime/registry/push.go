package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerlab/layerlab/drivers"
)

// Progress hears what a pull or push does, one layer (id) at a time, in
// the words dockerd's progress stream uses ("Pushing", "Layer already
// exists", ...); current and total are bytes, or 0 when not a transfer.
type Progress func(id, status string, current, total int64)

// PushLayer is a layer of an image to push: its uncompressed tar on disk
// and the blobs it is known as in registries (from pulls and pushes).
type PushLayer struct {
	DiffID string
	Path   string
	Known  []Blob
}

// Pushed is what a push left in the repository.
type Pushed struct {
	Digest v1.Hash // of the manifest
	Size   int64   // of the manifest
	Blobs  []Blob  // the layers as the repository now holds them
}

// Push writes an image (its config bytes as they are, so its ID stays the
// same) as a schema 2 manifest under ref. Per layer: a blob the
// repository already has is skipped ("Layer already exists"); one known
// in another repository of the same registry is mounted from there
// ("Mounted from REPO"); anything else is gzip-compressed and uploaded.
func (s *Service) Push(ctx context.Context, ref string, config []byte, layers []PushLayer, ac regtypes.AuthConfig, progress Progress) (Pushed, error) {
	r, err := s.parse(ref)
	if err != nil {
		return Pushed{}, err
	}
	tag, ok := r.(name.Tag)
	if !ok {
		return Pushed{}, fmt.Errorf("push %s: push a tag, not a digest: %w", ref, drivers.ErrInvalidArgument)
	}
	repo := tag.Context()
	reg := repo.RegistryStr()
	opts, err := s.options(ctx, reg, ac)
	if err != nil {
		return Pushed{}, err
	}
	for _, l := range layers {
		progress(short(l.DiffID), "Preparing", 0, 0)
	}
	img := &pushImage{config: config, byDigest: map[v1.Hash]v1.Layer{}}
	var out Pushed
	for _, l := range layers {
		b, layer, err := s.pushLayer(ctx, repo, l, opts, progress)
		if err != nil {
			return Pushed{}, s.explain(reg, err)
		}
		h, err := v1.NewHash(b.Digest)
		if err != nil {
			return Pushed{}, err
		}
		img.byDigest[h] = layer
		img.layers = append(img.layers, v1.Descriptor{MediaType: types.MediaType(b.MediaType), Size: b.Size, Digest: h})
		out.Blobs = append(out.Blobs, b)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return Pushed{}, err
	}
	v, err := partial.CompressedToImage(img)
	if err != nil {
		return Pushed{}, err
	}
	// Every layer is there now: Write only checks them, uploads the
	// config and puts the manifest.
	if err := remote.Write(tag, v, opts...); err != nil {
		return Pushed{}, s.explain(reg, err)
	}
	out.Digest, out.Size, err = v1.SHA256(bytesReader(raw))
	return out, err
}

// pushLayer puts one layer into repo (or finds it there) and returns its
// blob there and the layer the manifest names.
func (s *Service) pushLayer(ctx context.Context, repo name.Repository, l PushLayer, opts []remote.Option, progress Progress) (Blob, v1.Layer, error) {
	id := short(l.DiffID)
	reg := repo.RegistryStr()
	// A blob this repository or another one of the same registry got
	// from us or gave us: no compression needed, and maybe no upload.
	for _, pass := range []bool{true, false} {
		for _, k := range l.Known {
			if k.Registry != reg || (k.Repo == repo.RepositoryStr()) != pass {
				continue
			}
			b := Blob{Registry: reg, Repo: repo.RepositoryStr(), Digest: k.Digest, MediaType: k.MediaType, Size: k.Size}
			there, err := remote.Layer(repo.Digest(k.Digest), opts...)
			if err != nil {
				return Blob{}, nil, err
			}
			if ok, err := partial.Exists(there); err == nil && ok {
				progress(id, "Layer already exists", 0, 0)
				return b, there, nil
			}
			if pass {
				continue // we pushed it here once; it is gone: upload again
			}
			src, err := remote.Layer(repo.Registry.Repo(k.Repo).Digest(k.Digest), opts...)
			if err != nil {
				return Blob{}, nil, err
			}
			read := &countingLayer{Layer: src}
			ml := &remote.MountableLayer{Layer: read, Reference: src.(*remote.MountableLayer).Reference}
			if err := writeLayer(ctx, repo, ml, opts, id, progress); err != nil {
				return Blob{}, nil, err
			}
			if read.read.Load() {
				progress(id, "Pushed", 0, 0)
			} else {
				progress(id, "Mounted from "+k.Repo, 0, 0)
			}
			return b, ml, nil
		}
	}
	local, err := tarball.LayerFromFile(l.Path, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		return Blob{}, nil, fmt.Errorf("layer %s: %w", l.DiffID, err)
	}
	d, err := local.Digest()
	if err != nil {
		return Blob{}, nil, err
	}
	size, err := local.Size()
	if err != nil {
		return Blob{}, nil, err
	}
	b := Blob{Registry: reg, Repo: repo.RepositoryStr(), Digest: d.String(), MediaType: string(types.DockerLayer), Size: size}
	there, err := remote.Layer(repo.Digest(d.String()), opts...)
	if err != nil {
		return Blob{}, nil, err
	}
	if ok, err := partial.Exists(there); err == nil && ok {
		progress(id, "Layer already exists", 0, 0)
		return b, local, nil
	}
	if err := writeLayer(ctx, repo, local, opts, id, progress); err != nil {
		return Blob{}, nil, err
	}
	progress(id, "Pushed", 0, 0)
	return b, local, nil
}

// writeLayer is remote.WriteLayer reporting its bytes as "Pushing" of
// layer id; it returns once the last update was reported, so progress is
// never called after it (the caller's stream is not safe for that).
func writeLayer(ctx context.Context, repo name.Repository, l v1.Layer, opts []remote.Option, id string, progress Progress) error {
	ch := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for u := range ch {
			if u.Error == nil && ctx.Err() == nil {
				progress(id, "Pushing", u.Complete, u.Total)
			}
		}
	}()
	// WriteLayer closes ch when it returns.
	err := remote.WriteLayer(repo, l, append(opts, remote.WithProgress(ch))...)
	<-done
	return err
}

// countingLayer notes whether a mount fell back to reading the blob.
type countingLayer struct {
	v1.Layer
	read atomic.Bool
}

func (c *countingLayer) Compressed() (io.ReadCloser, error) {
	c.read.Store(true)
	return c.Layer.Compressed()
}

// short is the 12 hex digits dockerd's progress names a layer by.
func short(d string) string {
	if h, err := v1.NewHash(d); err == nil && len(h.Hex) >= 12 {
		return h.Hex[:12]
	}
	return d
}

// pushImage is the image a Push writes: the config bytes unchanged and a
// schema 2 manifest over the layers as the repository holds them.
type pushImage struct {
	config   []byte
	layers   []v1.Descriptor
	byDigest map[v1.Hash]v1.Layer
}

func (p *pushImage) RawConfigFile() ([]byte, error) { return p.config, nil }

func (p *pushImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }

func (p *pushImage) RawManifest() ([]byte, error) {
	cd, size, err := v1.SHA256(bytesReader(p.config))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2,
		Config: v1.Descriptor{MediaType: types.DockerConfigJSON, Size: size, Digest: cd}, Layers: p.layers}
	if m.Layers == nil {
		m.Layers = []v1.Descriptor{}
	}
	return json.Marshal(m)
}

func (p *pushImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := p.byDigest[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("push: no layer %s: %w", h, drivers.ErrNotFound)
}
