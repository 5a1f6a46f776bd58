package images

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"sort"
	"time"

	"github.com/docker/docker/api/types/filters"
	dimage "github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/storage"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
)

// entry is an image with its refs and decoded config, as the queries
// below read it.
type entry struct {
	rec     Record
	tags    []string                  // repo:tag refs
	digests []string                  // repo@digest refs (RepoDigests)
	config  dockerspec.DockerOCIImage // Docker's extensions (Healthcheck, Shell, OnBuild) included
}

func (s *Store) entry(tx *bolt.Tx, id digest.Digest) (entry, error) {
	rec, ok, err := record(tx, id)
	if err != nil {
		return entry{}, err
	}
	if !ok {
		return entry{}, noSuchImage(id)
	}
	e := entry{rec: rec}
	e.tags, e.digests = splitRefs(tagsOf(tx, id))
	raw, err := os.ReadFile(s.blobPath(id))
	if err != nil {
		return entry{}, fmt.Errorf("config of image %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &e.config); err != nil {
		return entry{}, fmt.Errorf("config of image %s: %w", id, err)
	}
	return e, nil
}

func (s *Store) lookup(nameOrID string) (entry, error) {
	var e entry
	err := s.db.View(func(tx *bolt.Tx) error {
		id, _, err := resolve(tx, nameOrID)
		if err != nil {
			return err
		}
		e, err = s.entry(tx, id)
		return err
	})
	return e, err
}

func created(e entry) time.Time {
	if e.config.Created != nil {
		return *e.config.Created
	}
	return e.rec.Loaded
}

// List returns the images that pass f: `dangling` (true: only images
// without a ref; false: only with one) and `reference` (a glob matched
// against each ref, with and without its tag, as docker does). Newest
// first, as docker lists them.
func (s *Store) List(f filters.Args) ([]dimage.Summary, error) {
	if err := f.Validate(map[string]bool{"dangling": true, "reference": true}); err != nil {
		return nil, fmt.Errorf("%w: %w", drivers.ErrInvalidArgument, err)
	}
	dangling, err := f.GetBoolOrDefault("dangling", false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", drivers.ErrInvalidArgument, err)
	}
	patterns := f.Get("reference")
	out := []dimage.Summary{} // [] rather than null when empty, as dockerd answers
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, _ []byte) error {
			e, err := s.entry(tx, digest.Digest(k))
			if err != nil {
				return err
			}
			// An image pulled by digest only is not dangling: a ref names it.
			if f.Contains("dangling") && dangling != (len(e.tags)+len(e.digests) == 0) {
				return nil
			}
			tags := e.tags
			if len(patterns) > 0 {
				// An image named only by digest matches by its repository.
				tags = matching(tags, patterns)
				if len(tags) == 0 && len(matching(e.digests, patterns)) == 0 {
					return nil
				}
			}
			out = append(out, dimage.Summary{
				ID: e.rec.ID.String(), ParentID: e.rec.Parent.String(), RepoTags: nonNil(tags), RepoDigests: nonNil(e.digests),
				Created: created(e).Unix(), Size: e.rec.Size, Labels: e.config.Config.Labels,
				Containers: -1, SharedSize: -1,
			})
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created > out[j].Created })
	return out, err
}

// matching returns the refs a reference pattern matches.
func matching(tags, patterns []string) []string {
	var out []string
	for _, t := range tags {
		repo := refRepo(t)
		for _, p := range patterns {
			if ok, _ := path.Match(p, t); ok {
				out = append(out, t)
				break
			}
			if ok, _ := path.Match(p, repo); ok {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Inspect returns the image nameOrID names in the shape of docker's
// ImageInspect. GraphDriver is empty: images are unpacked per driver on
// demand, so no single driver holds them.
func (s *Store) Inspect(nameOrID string) (dimage.InspectResponse, error) {
	e, err := s.lookup(nameOrID)
	if err != nil {
		return dimage.InspectResponse{}, err
	}
	c := e.config
	r := dimage.InspectResponse{
		ID: e.rec.ID.String(), RepoTags: nonNil(e.tags), RepoDigests: nonNil(e.digests),
		Author: c.Author, Architecture: c.Architecture, Variant: c.Variant, Os: c.OS, OsVersion: c.OSVersion,
		Size:        e.rec.Size,
		Config:      &c.Config,
		GraphDriver: storage.DriverData{Name: "", Data: map[string]string{}},
		RootFS:      dimage.RootFS{Type: "layers"},
	}
	if e.rec.Parent != "" {
		r.Parent = e.rec.Parent.String()
	}
	if c.Created != nil {
		r.Created = c.Created.Format(time.RFC3339Nano)
	}
	if n := len(c.History); n > 0 {
		r.Comment = c.History[n-1].Comment
	}
	for _, d := range e.rec.Layers {
		r.RootFS.Layers = append(r.RootFS.Layers, d.String())
	}
	return r, nil
}

// History returns the config's history, newest first, as docker does:
// each step that made a layer carries that layer's size, the newest the
// image's ID and refs.
func (s *Store) History(nameOrID string) ([]dimage.HistoryResponseItem, error) {
	e, err := s.lookup(nameOrID)
	if err != nil {
		return nil, err
	}
	sizes := make([]int64, len(e.rec.Layers))
	for i, d := range e.rec.Layers {
		if fi, err := os.Stat(s.blobPath(d)); err == nil {
			sizes[i] = fi.Size()
		}
	}
	var out []dimage.HistoryResponseItem
	li := 0
	for _, h := range e.config.History {
		item := dimage.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if !h.EmptyLayer && li < len(sizes) {
			item.Size = sizes[li]
			li++
		}
		out = append([]dimage.HistoryResponseItem{item}, out...)
	}
	if len(out) > 0 {
		out[0].ID = e.rec.ID.String()
		out[0].Tags = nonNil(e.tags)
	}
	return out, nil
}
