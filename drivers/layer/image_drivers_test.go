package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/btrfs"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/drivers/zfs"
)

// imageSize is each backing store: room for vfs's full copies of a Debian
// minbase (the image files are sparse).
const imageSize = 3 << 30

// hostDrivers are the drivers this host runs, each on its backing store.
func hostDrivers() []struct {
	factory drivers.Factory
	store   func(t *testing.T) string
} {
	ext4 := func(t *testing.T) string { return loopfs.ForTest(t, "ext4", imageSize).Dir }
	return []struct {
		factory drivers.Factory
		store   func(t *testing.T) string
	}{
		{vfs.Factory(), ext4},
		{overlay.OverlayFactory(), ext4},
		{overlay.Overlay2Factory(), ext4},
		{btrfs.Factory(), func(t *testing.T) string { return loopfs.ForTest(t, "btrfs", imageSize).Dir }},
		{zfs.Factory(), func(t *testing.T) string { return loopfs.ForTestZFS(t, imageSize).Dir }},
	}
}

// TestRealImagesOnEveryDriver builds the busybox and Debian images, saves
// each as a docker-archive, reads it back and, on every host driver,
// applies its layers (verifying their DiffIDs) and checks that Diff of the
// committed snapshots gives the same DiffIDs.
func TestRealImagesOnEveryDriver(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "applying images on drivers needs root")
	}
	images := map[string]func(*testing.T) string{"busybox": busyboxRoot, "debian": debianRoot}
	for _, name := range []string{"busybox", "debian"} {
		t.Run(name, func(t *testing.T) {
			img := buildImage(t, name, images[name](t))
			layers, diffIDs, err := readArchive(img.archive, t.TempDir())
			mustDo(t, err)
			for _, d := range hostDrivers() {
				t.Run(d.factory.Name, func(t *testing.T) {
					home := filepath.Join(d.store(t), "home")
					if p := d.factory.Probe(home); !p.Available() {
						feature.Skip(t, d.factory.Name, "%s", p.Reason)
					}
					drv, err := d.factory.Open(context.Background(), home, nil)
					mustDo(t, err)
					t.Cleanup(func() { drv.Close() })
					roundTrip(t, drv, layers, diffIDs)
				})
			}
		})
	}
}

// roundTrip applies the layers as a chain of committed snapshots, then
// diffs each committed snapshot against its parent through views.
func roundTrip(t *testing.T, drv drivers.Driver, layers []string, diffIDs []digest.Digest) {
	ctx := context.Background()
	parent := ""
	for i, l := range layers {
		name := diffIDs[i].Encoded()[:12]
		withMount(t, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, "active-"+name, parent) }, func(dir string) {
			f, err := os.Open(l)
			mustDo(t, err)
			defer f.Close()
			st, err := layer.Apply(ctx, dir, f, layer.WithDiffID(diffIDs[i]))
			if err != nil {
				t.Fatalf("apply layer %d (%s): %v", i, diffIDs[i], err)
			}
			if st.DiffID != diffIDs[i] {
				t.Errorf("layer %d: Apply's DiffID %s, want %s", i, st.DiffID, diffIDs[i])
			}
		})
		mustDo(t, drv.Commit(ctx, name, "active-"+name))
		parentView := ""
		if parent != "" {
			parentView = "view-parent-" + name
		}
		var lower string
		diff := func(upper string) {
			var out bytes.Buffer
			d, err := layer.Diff(ctx, &out, lower, upper)
			mustDo(t, err)
			if d.DiffID != diffIDs[i] {
				t.Errorf("layer %d: Diff of the committed snapshot gives %s, want %s (%d bytes, the layer had %d)", i, d.DiffID, diffIDs[i], out.Len(), fileSize(t, l))
				dumpDiff(t, l, out.Bytes())
			}
		}
		if parentView == "" {
			withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "view-"+name, name) }, diff)
		} else {
			withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, parentView, parent) }, func(pdir string) {
				lower = pdir
				withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "view-"+name, name) }, diff)
			})
			mustDo(t, drv.Remove(ctx, parentView))
		}
		mustDo(t, drv.Remove(ctx, "view-"+name))
		parent = name
	}
}

// withMount makes a snapshot with mk, mounts it, runs fn on the mount
// point and unmounts it.
func withMount(t testing.TB, mk func() ([]drivers.Mount, error), fn func(dir string)) {
	t.Helper()
	mounts, err := mk()
	mustDo(t, err)
	dir := t.TempDir()
	mustDo(t, mount.All(mounts, dir))
	defer func() {
		if err := mount.UnmountAll(dir); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	}()
	fn(dir)
}

func fileSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	mustDo(t, err)
	return fi.Size()
}

// dumpDiff logs the first entries where the layer and the diff differ.
func dumpDiff(t *testing.T, layerPath string, diff []byte) {
	f, err := os.Open(layerPath)
	mustDo(t, err)
	defer f.Close()
	want, _ := headers(f)
	got, _ := headers(bytes.NewReader(diff))
	shown := 0
	for i := 0; i < max(len(want), len(got)) && shown < 5; i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			t.Logf("entry %d: layer %s, diff %s", i, w, g)
			shown++
		}
	}
}

// headers describes each entry of the tar in r in one line.
func headers(r io.Reader) ([]string, error) {
	var out []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return out, err
		}
		out = append(out, fmt.Sprintf("%s type=%c mode=%o owner=%d:%d size=%d link=%q mtime=%d pax=%v",
			hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Size, hdr.Linkname, hdr.ModTime.Unix(), hdr.PAXRecords))
	}
}
