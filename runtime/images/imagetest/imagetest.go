// Package imagetest builds busybox images offline, from Debian's
// busybox-static (/bin/busybox, installed by `make setup`), for the tests
// of the image store, the API and layerlabd: busybox:latest is one layer
// (the binary, an absolute symlink per applet, /etc/passwd and /etc/group,
// Cmd ["sh"]) and busybox:two adds a second layer on that same base. Every
// timestamp is fixed, so the same busybox binary gives the same digests.
package imagetest

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/feature"
)

// Busybox is the binary the images are built from.
const Busybox = "/bin/busybox"

// epoch is the time stamped on every file, layer and config.
func epoch() time.Time { return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC) }

// Images are the two busybox images.
type Images struct {
	Latest v1.Image // busybox:latest, one layer
	Two    v1.Image // busybox:two, that layer and one more
}

// Build builds the images from the busybox binary at bin.
func Build(ctx context.Context, bin string) (Images, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return Images{}, err
	}
	out, err := command.Run(ctx, bin, "--list-full")
	if err != nil {
		return Images{}, err
	}
	base, err := tarLayer(baseEntries(data, strings.Fields(string(out))))
	if err != nil {
		return Images{}, err
	}
	top, err := tarLayer([]entry{
		{name: "etc/", mode: 0o755, typ: tar.TypeDir},
		{name: "etc/motd", mode: 0o644, typ: tar.TypeReg, body: []byte("layerlab busybox:two\n")},
	})
	if err != nil {
		return Images{}, err
	}
	latest, err := image(empty.Image, base, "ADD busybox / # layerlab imagetest")
	if err != nil {
		return Images{}, err
	}
	two, err := image(latest, top, "ADD motd /etc/motd # layerlab imagetest")
	if err != nil {
		return Images{}, err
	}
	return Images{Latest: latest, Two: two}, nil
}

// image appends l to parent with a history entry and busybox's config.
func image(parent v1.Image, l v1.Layer, createdBy string) (v1.Image, error) {
	img, err := mutate.Append(parent, mutate.Addendum{
		Layer:   l,
		History: v1.History{Created: v1.Time{Time: epoch()}, CreatedBy: createdBy},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: epoch()}
	cfg.Config.Cmd = []string{"sh"}
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return mutate.ConfigFile(img, cfg)
}

type entry struct {
	name, link string
	mode       int64
	typ        byte
	body       []byte
}

func baseEntries(busybox []byte, applets []string) []entry {
	es := []entry{{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, body: busybox}}
	dirs := map[string]bool{"etc/": true, "root/": true, "tmp/": true}
	for _, a := range applets {
		if a == "bin/busybox" {
			continue
		}
		es = append(es, entry{name: a, link: "/bin/busybox", mode: 0o777, typ: tar.TypeSymlink})
		for d := filepath.Dir(a); d != "."; d = filepath.Dir(d) {
			dirs[d+"/"] = true
		}
	}
	dirs["bin/"] = true
	for d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		es = append(es, entry{name: d, mode: mode, typ: tar.TypeDir})
	}
	es = append(es,
		entry{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg, body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		entry{name: "etc/group", mode: 0o644, typ: tar.TypeReg, body: []byte("root:x:0:\nnogroup:x:65534:\n")},
	)
	return es
}

// tarLayer writes entries (parents sorted before children) as an
// uncompressed layer with fixed times and owners.
func tarLayer(es []entry) (v1.Layer, error) {
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Linkname: e.link, Mode: e.mode, Typeflag: e.typ,
			Size: int64(len(e.body)), ModTime: epoch(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

// Write writes images as a docker-archive at path, one entry per ref.
func Write(path string, images map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for ref, img := range images {
		t, err := name.NewTag(ref)
		if err != nil {
			return err
		}
		refs[t] = img
	}
	return tarball.MultiRefWriteToFile(path, refs)
}

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// ForTest builds the images, skipping t (through drivers/feature, so
// LAYERLAB_REQUIRE=busybox makes it a failure) when busybox-static is
// missing.
func ForTest(t TB) Images {
	t.Helper()
	if _, err := os.Stat(Busybox); err != nil {
		feature.Skip(t, feature.Busybox, "%s: %v (make setup installs busybox-static)", Busybox, err)
		return Images{}
	}
	imgs, err := Build(context.Background(), Busybox)
	if err != nil {
		t.Fatalf("building busybox images: %v", err)
	}
	return imgs
}

// ArchiveForTest writes busybox:latest and busybox:two as one
// docker-archive in dir and returns its path.
func ArchiveForTest(t TB, dir string, refs ...string) string {
	t.Helper()
	imgs := ForTest(t)
	all := map[string]v1.Image{"busybox:latest": imgs.Latest, "busybox:two": imgs.Two}
	pick := all
	if len(refs) > 0 {
		pick = map[string]v1.Image{}
		for _, r := range refs {
			pick[r] = all[r]
		}
	}
	names := make([]string, 0, len(pick))
	for r := range pick {
		names = append(names, strings.ReplaceAll(r, ":", "-"))
	}
	sort.Strings(names)
	path := filepath.Join(dir, strings.Join(names, "+")+".tar")
	if err := Write(path, pick); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	return path
}
