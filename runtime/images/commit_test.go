package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/runtime/images"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

func layerTar(t *testing.T, entries ...tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	_ = tw.Close()
	return b.Bytes()
}

// TestCreateOnParent commits a layer on a loaded image: the new image
// lists the parent's layers and history plus its own, and its tree
// (Paths) has the layer's changes applied, whiteouts included.
func TestCreateOnParent(t *testing.T) {
	s, _ := newStore(t, nil)
	loadFile(t, s, imagetest.ArchiveForTest(t, t.TempDir()))
	parent, err := s.Resolve("busybox")
	if err != nil {
		t.Fatal(err)
	}
	before, err := s.Paths(parent)
	if err != nil || !before["/bin/ls"] {
		t.Fatalf("parent tree: %v, has /bin/ls: %v", err, before["/bin/ls"])
	}
	data := layerTar(t, tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644},
		tar.Header{Name: "bin/.wh.ls", Typeflag: tar.TypeReg, Mode: 0o644})
	f, err := s.TempFile("layer-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	id, err := s.Create(images.NewImage{Parent: parent, Layer: f.Name(), DiffID: digest.FromBytes(data),
		Config: dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Cmd: []string{"cat", "/f"}},
			DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{Healthcheck: &dockerspec.HealthcheckConfig{Test: []string{"CMD", "true"}, Retries: 2}}},
		Author: "me", Comment: "msg", CreatedBy: "sh", Ref: "img:v1"})
	if err != nil {
		t.Fatal(err)
	}
	wantID(t, s, "img:v1", id)
	if _, err := os.Stat(f.Name()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the layer file was not moved into the store: %v", err)
	}
	pi, _ := s.Inspect(parent.String())
	ii, err := s.Inspect("img:v1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ii.RootFS.Layers) != len(pi.RootFS.Layers)+1 || ii.Author != "me" || ii.Comment != "msg" ||
		!slices.Equal(ii.Config.Cmd, []string{"cat", "/f"}) || ii.Config.Healthcheck == nil || ii.Config.Healthcheck.Retries != 2 {
		t.Fatalf("inspect: %+v", ii)
	}
	h, err := s.History("img:v1")
	if err != nil || h[0].Comment != "msg" || h[0].CreatedBy != "sh" || h[0].Size != int64(len(data)) {
		t.Fatalf("history: %v %+v", err, h)
	}
	after, err := s.Paths(id)
	if err != nil || !after["/f"] || after["/bin/ls"] || !after["/bin/sh"] {
		t.Fatalf("committed tree: %v; /f %v /bin/ls %v", err, after["/f"], after["/bin/ls"])
	}
	// A parent that is gone is refused.
	if _, err := s.Create(images.NewImage{Parent: digest.FromString("gone"), Layer: f.Name(), DiffID: digest.FromBytes(data)}); err == nil {
		t.Fatal("Create on a missing parent succeeded")
	}
}

// TestImport makes a one-layer image of a rootfs tar and refuses what is
// not a layer.
func TestImport(t *testing.T) {
	s, _ := newStore(t, nil)
	data := layerTar(t, tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		tar.Header{Name: "bin/tool", Typeflag: tar.TypeReg, Size: 3, Mode: 0o755})
	for i, body := range [][]byte{data, imagetest.Gzip(data)} {
		id, err := s.Import(context.Background(), bytes.NewReader(body), images.NewImage{Ref: "imp:1", Comment: "imported"})
		if err != nil {
			t.Fatalf("import %d: %v", i, err)
		}
		ii, err := s.Inspect("imp:1")
		if err != nil || ii.ID != id.String() || len(ii.RootFS.Layers) != 1 || ii.RootFS.Layers[0] != digest.FromBytes(data).String() {
			t.Fatalf("import %d: %v %+v", i, err, ii)
		}
	}
	evil := layerTar(t, tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	for _, body := range [][]byte{evil, []byte("not a tar at all, not even a little bit")} {
		if _, err := s.Import(context.Background(), bytes.NewReader(body), images.NewImage{}); !errors.Is(err, images.ErrBadArchive) {
			t.Errorf("import of a bad tar: %v, want ErrBadArchive", err)
		}
	}
}

// TestCreateEmptyLayer makes a build step's image with no layer: the
// parent's layers and size, a history entry marked empty_layer, the
// Docker config extensions kept, and Child finding it by parent and key.
func TestCreateEmptyLayer(t *testing.T) {
	s, _ := newStore(t, nil)
	loadFile(t, s, imagetest.ArchiveForTest(t, t.TempDir()))
	parent, err := s.Resolve("busybox")
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.Create(images.NewImage{Parent: parent, Config: dockerspec.DockerOCIImageConfig{
		ImageConfig:             ocispec.ImageConfig{Env: []string{"A=1"}},
		DockerOCIImageConfigExt: dockerspec.DockerOCIImageConfigExt{OnBuild: []string{"RUN true"}, Shell: []string{"/bin/ash", "-c"}}},
		CreatedBy: "/bin/sh -c #(nop)  ENV A=1", BuildKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Inspect(id.String())
	if err != nil {
		t.Fatal(err)
	}
	base, _ := s.Inspect(parent.String())
	if len(img.RootFS.Layers) != len(base.RootFS.Layers) || img.Size != base.Size || img.Parent != parent.String() ||
		!slices.Equal(img.Config.OnBuild, []string{"RUN true"}) || !slices.Equal(img.Config.Shell, []string{"/bin/ash", "-c"}) {
		t.Errorf("empty-layer image: %+v", img)
	}
	hist, err := s.History(id.String())
	if err != nil || len(hist) < 2 || hist[0].Size != 0 || hist[0].CreatedBy != "/bin/sh -c #(nop)  ENV A=1" {
		t.Errorf("history: %+v, %v", hist, err)
	}
	if got, ok := s.Child(parent, "k1"); !ok || got != id {
		t.Errorf("Child(parent, k1) = %s, %v; want %s", got, ok, id)
	}
	if _, ok := s.Child(parent, "k2"); ok {
		t.Error("Child found a step with another key")
	}
	// A build's scratch base: no parent, no layer, no history.
	scratch, err := s.Create(images.NewImage{BuildKey: "scratch"})
	if err != nil {
		t.Fatal(err)
	}
	if h, err := s.History(scratch.String()); err != nil || len(h) != 0 {
		t.Errorf("scratch base history: %+v, %v", h, err)
	}
}
