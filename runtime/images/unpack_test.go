package images_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/runtime/images"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// TestUnpackSharesBaseLayer unpacks busybox:latest and busybox:two (which
// share their base layer) concurrently, twice each, on vfs and overlay2 on
// a loop ext4: each chain ID must be committed once, busybox:two's top
// must sit on busybox:latest's, and the unpacked tree must hold both
// layers' files.
func TestUnpackSharesBaseLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "unpacking mounts snapshots")
	}
	archive := imagetest.ArchiveForTest(t, t.TempDir())
	for _, f := range []drivers.Factory{vfs.Factory(), overlay.Overlay2Factory()} {
		t.Run(f.Name, func(t *testing.T) {
			fs := loopfs.ForTest(t, "ext4", 512<<20)
			home := filepath.Join(fs.Dir, f.Name)
			if p := f.Probe(home); !p.Available() {
				feature.Skip(t, f.Name, "%s", p.Reason)
			}
			ctx := context.Background()
			drv, err := f.Open(ctx, home, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { drv.Close() })
			s, _ := newStore(t, func(digest.Digest) bool { return false })
			loadFile(t, s, archive)
			latest, _ := s.Resolve("busybox:latest")
			two, _ := s.Resolve("busybox:two")
			in, err := s.Inspect("busybox:two")
			if err != nil {
				t.Fatal(err)
			}
			var diffIDs []digest.Digest
			for _, l := range in.RootFS.Layers {
				diffIDs = append(diffIDs, digest.Digest(l))
			}
			chain := images.ChainIDs(diffIDs)

			tops := make([]string, 4)
			errs := make([]error, 4)
			var wg sync.WaitGroup
			for i, id := range []digest.Digest{latest, two, latest, two} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					tops[i], errs[i] = s.Unpack(ctx, drv, id)
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("unpack %d: %v", i, err)
				}
			}
			if tops[0] != chain[0].String() || tops[2] != tops[0] || tops[1] != chain[1].String() || tops[3] != tops[1] {
				t.Fatalf("tops %v, want %s and %s", tops, chain[0], chain[1])
			}
			var snaps []drivers.Info
			err = drv.Walk(ctx, func(_ context.Context, info drivers.Info) error {
				snaps = append(snaps, info)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(snaps) != 2 {
				t.Fatalf("%d snapshots after unpacking, want the 2 chain IDs: %+v", len(snaps), snaps)
			}
			for _, sn := range snaps {
				if sn.Kind != drivers.KindCommitted || (sn.Name == tops[1]) != (sn.Parent == tops[0]) {
					t.Fatalf("snapshot %+v: want committed, %s on %s", sn, tops[1], tops[0])
				}
			}
			checkTree(t, drv, tops[1])

			// What a crash mid-unpack leaves is removed at the next start;
			// committed layers and other snapshots stay.
			if _, err := drv.Prepare(ctx, "extract-0123-"+tops[1], tops[0]); err != nil {
				t.Fatal(err)
			}
			if _, err := drv.Prepare(ctx, "container-rootfs", tops[1]); err != nil {
				t.Fatal(err)
			}
			if err := images.RemoveUnfinished(ctx, drv); err != nil {
				t.Fatal(err)
			}
			var left []string
			_ = drv.Walk(ctx, func(_ context.Context, info drivers.Info) error {
				left = append(left, info.Name)
				return nil
			})
			if len(left) != 3 || !slices.Contains(left, "container-rootfs") {
				t.Fatalf("after RemoveUnfinished: %v, want the two layers and container-rootfs", left)
			}
			if err := drv.Remove(ctx, "container-rootfs"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkTree mounts a view of top and looks for a file of each layer.
func checkTree(t *testing.T, drv drivers.Driver, top string) {
	t.Helper()
	ctx := context.Background()
	mounts, err := drv.View(ctx, "check-view", top)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Remove(ctx, "check-view")
	dir := t.TempDir()
	if err := mount.All(mounts, dir); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mount.UnmountAll(dir); err != nil {
			t.Error(err)
		}
	}()
	motd, err := os.ReadFile(filepath.Join(dir, "etc/motd"))
	if err != nil || !strings.Contains(string(motd), "busybox:two") {
		t.Errorf("etc/motd: %q %v", motd, err)
	}
	if link, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || link != "/bin/busybox" {
		t.Errorf("bin/sh -> %q %v", link, err)
	}
}
