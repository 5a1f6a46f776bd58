package images_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/images"
)

// blobsOf is img's layers as a registry repository would hold them.
func blobsOf(t *testing.T, img v1.Image, repo string) []images.Blob {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []images.Blob
	for _, l := range m.Layers {
		out = append(out, images.Blob{Registry: "reg:5000", Repo: repo, Digest: l.Digest.String(), MediaType: string(l.MediaType), Size: l.Size})
	}
	return out
}

// TestPull stores a two-layer image as a pull does: both layers are
// downloaded the first time ("Downloading", "Pull complete"), not the
// second ("Already exists"); the tag and the digest ref name it; the
// blobs are remembered for a push; rmi by tag takes the digest ref along.
func TestPull(t *testing.T) {
	s, _ := newStore(t, func(digest.Digest) bool { return false })
	img, err := random.Image(64<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	mdig, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	refs := []string{"reg:5000/r:1", "reg:5000/r@" + mdig.String()}
	var steps []string
	progress := func(id, status string, cur, total int64) { steps = append(steps, id+" "+status) }
	p, err := s.Pull(context.Background(), img, refs, blobsOf(t, img, "r"), progress)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID.String() != id.String() || !p.Fresh {
		t.Fatalf("pulled %+v, want %s fresh", p, id)
	}
	joined := strings.Join(steps, "\n")
	for _, want := range []string{"Pulling fs layer", "Downloading", "Verifying Checksum", "Extracting", "Pull complete"} {
		if strings.Count(joined, want) < 2 {
			t.Errorf("progress lacks %q for each layer:\n%s", want, joined)
		}
	}
	steps = nil
	if p, err = s.Pull(context.Background(), img, refs, blobsOf(t, img, "r"), progress); err != nil || p.Fresh {
		t.Fatalf("second pull: %+v %v", p, err)
	}
	if n := strings.Count(strings.Join(steps, "\n"), "Already exists"); n != 2 || len(steps) != 2 {
		t.Errorf("second pull: %q, want two Already exists", steps)
	}

	insp, err := s.Inspect("reg:5000/r@" + mdig.String())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(insp.RepoTags, []string{"reg:5000/r:1"}) || !slices.Equal(insp.RepoDigests, []string{"reg:5000/r@" + mdig.String()}) {
		t.Errorf("inspect: tags %v digests %v", insp.RepoTags, insp.RepoDigests)
	}
	list, err := s.List(filters.NewArgs(filters.Arg("reference", "reg:5000/r")))
	if err != nil || len(list) != 1 || len(list[0].RepoDigests) != 1 {
		t.Errorf("list by reference: %+v %v", list, err)
	}
	_, _, layers, err := s.PushSource("reg:5000/r:1")
	if err != nil || len(layers) != 2 || len(layers[0].Known) != 1 || layers[0].Known[0].Repo != "r" {
		t.Fatalf("push source: %+v %v", layers, err)
	}
	if err := s.Tag("reg:5000/r:1", "x@"+mdig.String()); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("tag with a digest: %v", err)
	}
	steps2, err := s.Delete("reg:5000/r:1", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps2) != 3 || steps2[1].Untagged != "reg:5000/r@"+mdig.String() || steps2[2].Deleted != digest.Digest(id.String()) {
		t.Errorf("rmi by tag: %+v, want the tag, the digest ref and the image", steps2)
	}
}

// TestPullRefusesBadLayers: a layer whose content is not the DiffID the
// config names is refused, and nothing is recorded.
func TestPullRefusesBadLayers(t *testing.T) {
	s, _ := newStore(t, func(digest.Digest) bool { return false })
	a, _ := random.Image(1024, 1)
	b, _ := random.Image(1024, 1)
	// a's config and manifest, b's layer under a's digest.
	bad := swapped{Image: a, other: b}
	_, err := s.Pull(context.Background(), bad, []string{"reg:5000/bad:1"}, blobsOf(t, a, "bad"), func(string, string, int64, int64) {})
	if err == nil || !strings.Contains(err.Error(), "DiffID") {
		t.Fatalf("pull of a layer that is not its DiffID: %v", err)
	}
	if s.Count() != 0 {
		t.Errorf("%d images after a refused pull", s.Count())
	}
}

type swapped struct {
	v1.Image
	other v1.Image
}

func (s swapped) Layers() ([]v1.Layer, error) { return s.other.Layers() }
