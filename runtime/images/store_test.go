package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/images"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// newStore opens a store in a fresh directory, with inUse as its hook.
func newStore(t *testing.T, inUse func(digest.Digest) bool) (*images.Store, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := images.New(filepath.Join(dir, "image"), db, images.WithInUse(inUse))
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func loadFile(t *testing.T, s *images.Store, path string) []images.Loaded {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loaded, err := s.Load(context.Background(), f)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return loaded
}

func wantID(t *testing.T, s *images.Store, ref string, id digest.Digest) {
	t.Helper()
	got, err := s.Resolve(ref)
	if err != nil || got != id {
		t.Fatalf("%s resolves to %s (%v), want %s", ref, got, err, id)
	}
}

func TestLoadInspectHistoryTagDelete(t *testing.T) {
	imgs := imagetest.ForTest(t)
	tmp := t.TempDir()
	archive := imagetest.ArchiveForTest(t, tmp)
	s, _ := newStore(t, func(digest.Digest) bool { return false })
	loaded := loadFile(t, s, archive)
	latestID, _ := imgs.Latest.ConfigName()
	twoID, _ := imgs.Two.ConfigName()
	if len(loaded) != 2 {
		t.Fatalf("loaded %v, want two images", loaded)
	}
	wantID(t, s, "busybox", digest.Digest(latestID.String()))
	wantID(t, s, "docker.io/library/busybox:two", digest.Digest(twoID.String()))
	wantID(t, s, latestID.Hex[:12], digest.Digest(latestID.String()))

	in, err := s.Inspect("busybox:two")
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := imgs.Two.ConfigFile()
	if len(in.RootFS.Layers) != 2 || in.RootFS.Layers[0] != cfg.RootFS.DiffIDs[0].String() || in.Config.Cmd[0] != "sh" || in.Os != "linux" {
		t.Fatalf("inspect busybox:two: %+v", in)
	}
	h, err := s.History("busybox:two")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].ID != twoID.String() || !strings.Contains(h[0].CreatedBy, "motd") || h[1].Size <= h[0].Size {
		t.Fatalf("history: %+v", h)
	}

	if err := s.Tag("busybox", "busybox:copy"); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(filters.NewArgs(filters.Arg("reference", "busybox:c*")))
	if err != nil || len(list) != 1 || !slices.Equal(list[0].RepoTags, []string{"busybox:copy"}) {
		t.Fatalf("reference filter: %+v %v", list, err)
	}
	// A ref untags; the image stays while another ref names it.
	steps, err := s.Delete("busybox:latest", false)
	if err != nil || len(steps) != 1 || steps[0].Untagged != "busybox:latest" {
		t.Fatalf("delete busybox:latest: %+v %v", steps, err)
	}
	if _, err := s.Delete("busybox:latest", false); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("second delete: %v, want not found", err)
	}
	// The last ref takes the image; its layer stays for busybox:two.
	if steps, err = s.Delete("busybox:copy", false); err != nil || len(steps) != 2 || steps[1].Deleted.String() != latestID.String() {
		t.Fatalf("delete busybox:copy: %+v %v", steps, err)
	}
	if _, err := s.Inspect("busybox:two"); err != nil {
		t.Fatal(err)
	}
	if dangling, _ := s.List(filters.NewArgs(filters.Arg("dangling", "true"))); len(dangling) != 0 {
		t.Fatalf("dangling: %+v", dangling)
	}
}

func TestDeleteConflicts(t *testing.T) {
	archive := imagetest.ArchiveForTest(t, t.TempDir(), "busybox:latest")
	inUse := true
	s, _ := newStore(t, func(digest.Digest) bool { return inUse })
	id := loadFile(t, s, archive)[0].ID
	if err := s.Tag("busybox", "other:1"); err != nil {
		t.Fatal(err)
	}
	// By ID with two refs: a conflict unless forced.
	if _, err := s.Delete(id.Encoded()[:12], false); !errors.Is(err, images.ErrConflict) || !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("delete by id: %v, want a conflict", err)
	}
	if _, err := s.Delete("other:1", false); err != nil {
		t.Fatal(err)
	}
	// In use: the last ref is a conflict; forced, the image stays, dangling.
	if _, err := s.Delete("busybox", false); !errors.Is(err, images.ErrConflict) {
		t.Fatalf("delete in use: %v, want a conflict", err)
	}
	steps, err := s.Delete("busybox", true)
	if err != nil || len(steps) != 1 || steps[0].Untagged == "" {
		t.Fatalf("forced delete in use: %+v %v", steps, err)
	}
	if d, _ := s.List(filters.NewArgs(filters.Arg("dangling", "true"))); len(d) != 1 {
		t.Fatalf("dangling after a forced untag: %+v", d)
	}
	inUse = false
	if steps, err = s.Delete(id.String(), false); err != nil || len(steps) != 1 || steps[0].Deleted != id {
		t.Fatalf("delete unused: %+v %v", steps, err)
	}
	if s.Count() != 0 {
		t.Fatalf("%d images left", s.Count())
	}
}

// TestSaveLoadRoundTrip saves both images and loads the result three
// ways: as the docker-archive, as a pure OCI layout (manifest.json
// dropped) and gzip-compressed; the IDs must survive each.
func TestSaveLoadRoundTrip(t *testing.T) {
	tmp := t.TempDir()
	archive := imagetest.ArchiveForTest(t, tmp)
	s, _ := newStore(t, func(digest.Digest) bool { return false })
	loaded := loadFile(t, s, archive)
	var saved bytes.Buffer
	if err := s.Save(context.Background(), &saved, []string{"busybox:latest", "busybox:two"}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, saved.Bytes())
	for _, n := range []string{"manifest.json", "index.json", "oci-layout"} {
		if !names[n] {
			t.Fatalf("saved archive lacks %s: %v", n, names)
		}
	}
	variants := map[string][]byte{
		"docker-archive": saved.Bytes(),
		"oci-layout":     dropEntry(t, saved.Bytes(), "manifest.json"),
		"gzip":           gzipped(t, saved.Bytes()),
	}
	for name, data := range variants {
		t.Run(name, func(t *testing.T) {
			s2, _ := newStore(t, func(digest.Digest) bool { return false })
			got, err := s2.Load(context.Background(), bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(loaded) {
				t.Fatalf("loaded %v, want %v", got, loaded)
			}
			for _, l := range loaded {
				wantID(t, s2, l.Ref, l.ID)
			}
		})
	}
}

func tarNames(t *testing.T, data []byte) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}

// rewrite is imagetest.Rewrite for a test.
func rewrite(t *testing.T, data []byte, edit func(h *tar.Header, body []byte) []byte) []byte {
	t.Helper()
	out, err := imagetest.Rewrite(data, edit)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dropEntry(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	out, err := imagetest.Without(data, name)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipped(_ *testing.T, data []byte) []byte { return imagetest.Gzip(data) }

// TestHostileArchives: each is refused as invalid, records nothing and
// writes nothing outside the store.
func TestHostileArchives(t *testing.T) {
	tmp := t.TempDir()
	data, err := os.ReadFile(imagetest.ArchiveForTest(t, tmp, "busybox:latest"))
	if err != nil {
		t.Fatal(err)
	}
	manifestEdit := func(f func(m []map[string]any)) func(*tar.Header, []byte) []byte {
		return func(h *tar.Header, body []byte) []byte {
			if h.Name != "manifest.json" {
				return body
			}
			var m []map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			f(m)
			out, _ := json.Marshal(m)
			return out
		}
	}
	isLayer := func(h *tar.Header) bool {
		return strings.HasSuffix(h.Name, ".tar.gz") || strings.HasSuffix(h.Name, ".tar")
	}
	// A well-formed image whose layer writes through "../": its DiffID
	// matches, so only the layer check can refuse it.
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	_ = tw.WriteHeader(&tar.Header{Name: "../../escaped", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("x\n"))
	_ = tw.Close()
	evilLayer, err := tarball.LayerFromReader(bytes.NewReader(evil.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	evilImg, err := mutate.AppendLayers(empty.Image, evilLayer)
	if err != nil {
		t.Fatal(err)
	}
	evilPath := filepath.Join(tmp, "evil.tar")
	if err := imagetest.Write(evilPath, map[string]v1.Image{"evil:latest": evilImg}); err != nil {
		t.Fatal(err)
	}
	evilArchive, err := os.ReadFile(evilPath)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"traversal in manifest.json": rewrite(t, data, manifestEdit(func(m []map[string]any) { m[0]["Config"] = "../../etc/passwd" })),
		"absolute layer path":        rewrite(t, data, manifestEdit(func(m []map[string]any) { m[0]["Layers"] = []string{"/etc/passwd"} })),
		"missing blob":               rewrite(t, data, func(h *tar.Header, body []byte) []byte { return map[bool][]byte{true: nil, false: body}[isLayer(h)] }),
		"layer digest mismatch": rewrite(t, data, func(h *tar.Header, body []byte) []byte {
			if isLayer(h) {
				return gzipped(t, mustGunzipAppend(t, body))
			}
			return body
		}),
		"not an image":  []byte("plain text, not a tar"),
		"layer refused": evilArchive,
	}
	// The same hostility in an OCI layout (Save's output, manifest.json
	// dropped): a blob whose content is not its name, an entry climbing
	// out, a symlink entry.
	s0, _ := newStore(t, func(digest.Digest) bool { return false })
	loadFile(t, s0, imagetest.ArchiveForTest(t, tmp, "busybox:latest"))
	var saved bytes.Buffer
	if err := s0.Save(context.Background(), &saved, []string{"busybox"}); err != nil {
		t.Fatal(err)
	}
	oci := dropEntry(t, saved.Bytes(), "manifest.json")
	cases["OCI blob digest mismatch"] = rewrite(t, oci, func(h *tar.Header, body []byte) []byte {
		if strings.HasPrefix(h.Name, "blobs/sha256/") && len(body) > 1000 {
			return gzipped(t, []byte("not the layer"))
		}
		return body
	})
	cases["OCI entry climbing out"] = rewrite(t, oci, func(h *tar.Header, body []byte) []byte {
		if h.Name == "oci-layout" {
			h.Name = "../oci-layout"
		}
		return body
	})
	cases["OCI symlink entry"] = rewrite(t, oci, func(h *tar.Header, body []byte) []byte {
		if h.Name == "index.json" {
			h.Typeflag, h.Linkname = tar.TypeSymlink, "/etc/passwd"
			return []byte{}
		}
		return body
	})
	for name, archive := range cases {
		t.Run(name, func(t *testing.T) {
			s, dir := newStore(t, func(digest.Digest) bool { return false })
			_, err := s.Load(context.Background(), bytes.NewReader(archive))
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("load: %v, want an invalid argument", err)
			}
			t.Logf("refused: %v", err)
			if s.Count() != 0 {
				t.Fatalf("%d images recorded after a refused load", s.Count())
			}
			if _, err := os.Lstat(filepath.Join(dir, "escaped")); err == nil {
				t.Fatal("a file was written outside the store")
			}
			if list, _ := s.List(filters.NewArgs()); len(list) != 0 {
				t.Fatalf("listed %+v", list)
			}
		})
	}
}

// mustGunzipAppend decompresses a layer and adds a file: same shape, other
// content, so its DiffID no longer matches the config's.
func mustGunzipAppend(t *testing.T, gz []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return rewrite(t, body, func(h *tar.Header, b []byte) []byte {
		if h.Name == "etc/passwd" {
			return append(b, []byte("evil:x:0:0::/:/bin/sh\n")...)
		}
		return b
	})
}
