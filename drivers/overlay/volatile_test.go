package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

func TestOptionsRefusedWithoutAHome(t *testing.T) {
	for _, tc := range []struct {
		f    drivers.Factory
		opts drivers.Options
	}{
		{OverlayFactory(), drivers.Options{"size": "1G"}}, // classic overlay has no quota
		{OverlayFactory(), drivers.Options{"volatile": "maybe"}},
		{Overlay2Factory(), drivers.Options{"size": "notasize"}},
		{Overlay2Factory(), drivers.Options{"volatile": "2"}},
	} {
		if err := tc.f.CheckOptions(tc.opts); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s %v: %v, want ErrInvalidArgument", tc.f.Name, tc.opts, err)
		}
		// The constructor refuses the same, and hands back a nil Driver.
		d, err := tc.f.Open(context.Background(), filepath.Join(t.TempDir(), "home"), tc.opts)
		if d != nil || !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s Open %v: %v, %v; want a nil Driver and ErrInvalidArgument", tc.f.Name, tc.opts, d, err)
		}
	}
	for _, f := range []drivers.Factory{OverlayFactory(), Overlay2Factory()} {
		if err := f.CheckOptions(drivers.Options{"volatile": "true"}); err != nil {
			t.Errorf("%s volatile=true: %v", f.Name, err)
		}
	}
}

// TestVolatile checks, for both drivers, that volatile=true puts the
// option on active overlay mounts only, that a snapshot can be mounted
// again after a clean unmount (the kernel leaves a marker that would
// refuse it), and that after a restart (another boot id) it is refused.
func TestVolatile(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	open := map[string]func(context.Context, string, drivers.Options) (*core.Driver, error){
		NameOverlay:  NewOverlay,
		NameOverlay2: NewOverlay2,
	}
	for name, newDriver := range open {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(fs.Dir, name)
			d, err := newDriver(ctx, filepath.Join(dir, "home"), drivers.Options{"volatile": "true"})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if !slices.ContainsFunc(d.Capabilities().Notes, func(n string) bool { return n == "mounted volatile: "+volatileNote }) {
				t.Errorf("capabilities lack the volatile caveat: %v", d.Capabilities().Notes)
			}
			committedParent(t, ctx, d, dir, "parent", func(root string) error {
				return os.WriteFile(filepath.Join(root, "file"), []byte("lower"), 0o644)
			})
			ms, err := d.Prepare(ctx, "child", "parent")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(ms[0].Options, "volatile") {
				t.Fatalf("active mount options %v lack volatile", ms[0].Options)
			}
			upper, _ := option(ms[0], "upperdir")
			marker := filepath.Join(filepath.Dir(upper), "work", "work", "incompat", "volatile")
			target := filepath.Join(dir, "mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 2; round++ {
				if round > 0 {
					if ms, err = d.Mounts(ctx, "child"); err != nil {
						t.Fatal(err)
					}
				}
				if err := mount.All(ms, target); err != nil {
					t.Fatalf("mount %d: %v", round, err)
				}
				werr := os.WriteFile(filepath.Join(target, "file"), []byte("upper"), 0o644)
				if err := mount.UnmountAll(target); err != nil {
					t.Fatal(err)
				}
				if werr != nil {
					t.Fatal(werr)
				}
				if _, err := os.Lstat(marker); err != nil {
					t.Fatalf("after volatile mount %d the kernel left no marker: %v", round, err)
				}
			}
			if name == NameOverlay2 {
				vms, err := d.View(ctx, "view", "parent")
				if err != nil {
					t.Fatal(err)
				}
				if slices.Contains(vms[0].Options, "volatile") {
					t.Errorf("view mount options %v carry volatile", vms[0].Options)
				}
			}
			// A restart: the boot id recorded differs from this boot's.
			if err := os.WriteFile(filepath.Join(filepath.Dir(upper), bootFile), []byte("another-boot\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Mounts(ctx, "child"); !errors.Is(err, drivers.ErrFailedPrecondition) {
				t.Errorf("mounts after a restart: %v, want ErrFailedPrecondition", err)
			}
			if err := d.Remove(ctx, "child"); err != nil {
				t.Errorf("remove a refused snapshot: %v", err)
			}
		})
	}
}
