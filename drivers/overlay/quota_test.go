package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/drivertest"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// size= where nothing can enforce it is refused, saying why.
func TestOverlay2SizeNeedsProjectQuota(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	_, err := NewOverlay2(ctx, filepath.Join(fs.Dir, "a"), drivers.Options{"size": "10M"})
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "overlay2 on ext4") || !strings.Contains(err.Error(), "prjquota") {
		t.Fatalf("size=10M on ext4: %v", err)
	}
	d, err := NewOverlay2(ctx, filepath.Join(fs.Dir, "b"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Capabilities().Quota {
		t.Error("overlay2 on ext4 claims quota support")
	}
	_, err = d.Prepare(ctx, "k", "", drivers.WithSize(10<<20))
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "prjquota") {
		t.Fatalf("WithSize on ext4: %v", err)
	}
	if _, err := d.Stat(ctx, "k"); !errors.Is(err, drivers.ErrNotFound) {
		t.Fatalf("the refused snapshot was recorded: %v", err)
	}
	if _, err := NewOverlay2(ctx, filepath.Join(fs.Dir, "c"), drivers.Options{"size": "lots"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("size=lots: %v", err)
	}
}

// On xfs mounted with prjquota, overlay2 declares quota support and the
// conformance suite's quota check runs. This host's kernel has no xfs
// quota (CONFIG_XFS_QUOTA is off), so here it skips as missing xfs-quota;
// it is meant for the qemu test guest, where LAYERLAB_REQUIRE makes that
// skip a failure.
func TestOverlay2ConformanceXFSQuota(t *testing.T) {
	drivertest.Conformance(t, drivertest.Config{
		Factory:        Overlay2Factory(),
		ContainerdName: "overlayfs",
		Fixtures: []drivertest.Fixture{{Name: "xfs-prjquota", Quota: feature.XFSQuota, Dir: func(t *testing.T) string {
			return loopfs.ForTestWith(t, "xfs", 0, "prjquota").Dir
		}}},
	})
}

// The probe's class reaches the caller of Registry.Open: a home that is a
// file is the caller's mistake, not a driver missing here.
func TestRegistryOpenKeepsTheProbesClass(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []drivers.Factory{OverlayFactory(), Overlay2Factory()} {
		_, err := drivers.NewRegistry(f).Open(context.Background(), f.Name, file, nil)
		if !errors.Is(err, drivers.ErrInvalidArgument) || errors.Is(err, drivers.ErrUnavailable) {
			t.Errorf("%s: registry open of a file home: %v, want ErrInvalidArgument", f.Name, err)
		}
	}
}
