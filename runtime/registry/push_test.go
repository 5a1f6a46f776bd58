package registry

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// memRegistry is go-containerregistry's in-memory registry on loopback.
func memRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// localLayers writes img's layers uncompressed, as the image store keeps
// them.
func localLayers(t *testing.T, img v1.Image) ([]byte, []PushLayer) {
	t.Helper()
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []PushLayer
	for i, l := range ls {
		d, _ := l.DiffID()
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "layer"+string(rune('0'+i)))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, PushLayer{DiffID: d.String(), Path: p})
	}
	return config, out
}

// TestPushFetch pushes an image three times: uploaded, then found there
// ("Layer already exists"), then into another repository from the blobs
// the first push left, uploading nothing; each fetches back with the same config (the
// image ID survives the round trip).
func TestPushFetch(t *testing.T) {
	reg := memRegistry(t)
	s, err := New(Config{CertsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(32<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	config, layers := localLayers(t, img)
	var steps []string
	progress := func(id, status string, _, _ int64) { steps = append(steps, status) }
	ctx := t.Context()
	first, err := s.Push(ctx, reg+"/a/img:1", config, layers, regtypes.AuthConfig{}, progress)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(strings.Join(steps, ","), "Pushed") != 2 || len(first.Blobs) != 2 {
		t.Fatalf("first push: %v %+v", steps, first)
	}
	steps = nil
	again, err := s.Push(ctx, reg+"/a/img:1", config, layers, regtypes.AuthConfig{}, progress)
	if err != nil || again.Digest != first.Digest {
		t.Fatalf("second push: %v, digest %s then %s", err, first.Digest, again.Digest)
	}
	if strings.Count(strings.Join(steps, ","), "Layer already exists") != 2 {
		t.Errorf("second push: %v", steps)
	}
	for i := range layers {
		layers[i].Known = []Blob{first.Blobs[i]}
	}
	steps = nil
	if _, err := s.Push(ctx, reg+"/b/img:2", config, layers, regtypes.AuthConfig{}, progress); err != nil {
		t.Fatal(err)
	}
	// ggcr's in-memory registry keeps blobs across repositories, so it
	// answers the existence check before a mount is tried (the e2e test
	// sees the mount with distribution); either way nothing is uploaded.
	if strings.Contains(strings.Join(steps, ","), "Pushed") {
		t.Errorf("push to another repository uploaded again: %v", steps)
	}
	for _, ref := range []string{reg + "/a/img:1", reg + "/b/img:2", reg + "/a/img@" + first.Digest.String()} {
		f, err := s.Fetch(ctx, ref, v1.Platform{OS: "linux", Architecture: "amd64"}, regtypes.AuthConfig{})
		if err != nil {
			t.Fatalf("fetch %s: %v", ref, err)
		}
		got, _ := f.Image.RawConfigFile()
		if string(got) != string(config) || f.Digest != first.Digest || len(f.Blobs) != 2 {
			t.Errorf("fetch %s: digest %s, %d blobs, config changed: %v", ref, f.Digest, len(f.Blobs), string(got) != string(config))
		}
	}
	if _, err := s.Fetch(ctx, reg+"/nosuch:1", v1.Platform{OS: "linux", Architecture: "amd64"}, regtypes.AuthConfig{}); err == nil || !strings.Contains(err.Error(), "manifest for "+reg+"/nosuch:1 not found") {
		t.Errorf("fetch of an unknown image: %v", err)
	}
}

// TestFetchIndex picks the requested platform from a manifest list.
func TestFetchIndex(t *testing.T) {
	reg := memRegistry(t)
	s, err := New(Config{CertsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	amd, _ := random.Image(1024, 1)
	arm, _ := random.Image(1024, 1)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	ref := mustParse(t, reg+"/multi:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	for pl, want := range map[string]v1.Image{"": amd, "linux/arm64": arm, "linux/arm64/v8": arm} {
		p, err := ParsePlatform(pl)
		if err != nil {
			t.Fatal(err)
		}
		f, err := s.Fetch(t.Context(), reg+"/multi:1", p, regtypes.AuthConfig{})
		if err != nil {
			t.Fatalf("platform %q: %v", pl, err)
		}
		got, _ := f.Image.ConfigName()
		w, _ := want.ConfigName()
		if got != w || f.Digest != idxDigest {
			t.Errorf("platform %q: image %s (digest %s), want %s (%s)", pl, got, f.Digest, w, idxDigest)
		}
	}
	_, err = s.Fetch(t.Context(), reg+"/multi:1", v1.Platform{OS: "linux", Architecture: "s390x"}, regtypes.AuthConfig{})
	if err == nil || !strings.Contains(err.Error(), "linux/arm64/v8, linux/amd64") {
		t.Errorf("missing platform: %v", err)
	}
}
