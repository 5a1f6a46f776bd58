package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerlab/layerlab/drivers"
)

// Blob is a layer as one repository of a registry holds it: what a push
// may mount from, or find already there.
type Blob struct {
	Registry  string `json:"registry"`
	Repo      string `json:"repo"`
	Digest    string `json:"digest"`    // of the compressed blob
	MediaType string `json:"mediaType"` // as the manifest named it
	Size      int64  `json:"size"`
}

// Fetched is an image a Fetch found: its manifest and config are read,
// its layers are fetched (and verified by digest) as they are read.
type Fetched struct {
	Ref    name.Reference
	Image  v1.Image
	Digest v1.Hash // what the reference resolved to: an index or a manifest
	// Blobs are the image's layers as this repository holds them, in
	// order.
	Blobs []Blob
}

// Options returns go-containerregistry's options to reach the registry of
// ref with the client's credentials.
func (s *Service) options(ctx context.Context, reg string, ac regtypes.AuthConfig) ([]remote.Option, error) {
	rt, err := s.transport(reg)
	if err != nil {
		return nil, err
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithAuth(authenticator(ac)),
		remote.WithUserAgent("layerlabd"), remote.WithJobs(1)}, nil
}

// ParsePlatform reads a pull's platform parameter (os[/arch[/variant]]);
// empty is linux/amd64 (this daemon's).
func ParsePlatform(p string) (v1.Platform, error) {
	if strings.TrimSpace(p) == "" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	pl, err := v1.ParsePlatform(p)
	if err != nil || pl.OS == "" || pl.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT], e.g. linux/amd64: %w", p, drivers.ErrInvalidArgument)
	}
	return *pl, nil
}

// Fetch resolves ref (a tag or a digest reference) on its registry and
// returns the image for platform: from an index or manifest list, the
// entry for that platform; a schema2 or OCI manifest as it is. Schema 1
// manifests are refused.
func (s *Service) Fetch(ctx context.Context, ref string, platform v1.Platform, ac regtypes.AuthConfig) (Fetched, error) {
	r, err := s.parse(ref)
	if err != nil {
		return Fetched{}, err
	}
	reg := r.Context().RegistryStr()
	opts, err := s.options(ctx, reg, ac)
	if err != nil {
		return Fetched{}, err
	}
	opts = append(opts, remote.WithPlatform(platform))
	// The request's context bounds it all: the image read below fetches
	// its blobs lazily with the context Get was given.
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return Fetched{}, s.notFound(r, s.explain(reg, err))
	}
	f := Fetched{Ref: r, Digest: desc.Digest}
	switch desc.MediaType {
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return Fetched{}, fmt.Errorf("%s is a schema 1 manifest, which layerlabd does not pull; push it again with a current client (schema 2 or OCI): %w", ref, drivers.ErrNotImplemented)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Fetched{}, s.explain(reg, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return Fetched{}, s.explain(reg, err)
		}
		var child *v1.Descriptor
		for i, m := range im.Manifests {
			if m.Platform != nil && m.Platform.Satisfies(platform) {
				child = &im.Manifests[i]
				break
			}
		}
		if child == nil {
			return Fetched{}, fmt.Errorf("no matching manifest for %s in the manifest list entries of %s (it has %s): %w", platform, ref, platforms(im), drivers.ErrNotFound)
		}
		f.Image, err = idx.Image(child.Digest)
		if err != nil {
			return Fetched{}, s.explain(reg, err)
		}
	} else if f.Image, err = desc.Image(); err != nil {
		return Fetched{}, s.explain(reg, err)
	}
	m, err := f.Image.Manifest()
	if err != nil {
		return Fetched{}, s.explain(reg, err)
	}
	for _, l := range m.Layers {
		f.Blobs = append(f.Blobs, Blob{Registry: reg, Repo: r.Context().RepositoryStr(), Digest: l.Digest.String(), MediaType: string(l.MediaType), Size: l.Size})
	}
	return f, nil
}

// notFound words an unknown image as dockerd does, which clients show.
func (s *Service) notFound(r name.Reference, err error) error {
	if !isNotFound(err) {
		return err
	}
	return fmt.Errorf("manifest for %s not found: %w", r.Name(), err)
}

func isNotFound(err error) bool { return errors.Is(err, drivers.ErrNotFound) }

func platforms(im *v1.IndexManifest) string {
	var out []string
	for _, m := range im.Manifests {
		if m.Platform != nil {
			out = append(out, m.Platform.String())
		}
	}
	if len(out) == 0 {
		return "no platforms"
	}
	return strings.Join(out, ", ")
}

// Tags lists the tags of repository repo (docker pull -a).
func (s *Service) Tags(ctx context.Context, repo string, ac regtypes.AuthConfig) ([]string, error) {
	r, err := name.NewRepository(repo)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w: %w", repo, drivers.ErrInvalidArgument, err)
	}
	if s.Insecure(r.RegistryStr()) {
		if r, err = name.NewRepository(repo, name.Insecure); err != nil {
			return nil, err
		}
	}
	opts, err := s.options(ctx, r.RegistryStr(), ac)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r, opts...)
	if err != nil {
		err = s.explain(r.RegistryStr(), err)
		if isNotFound(err) {
			return nil, fmt.Errorf("repository %s not found: %w", r.Name(), err)
		}
		return nil, err
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("repository %s has no tags: %w", r.Name(), drivers.ErrNotFound)
	}
	return tags, nil
}
