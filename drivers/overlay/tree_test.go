package overlay

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// TestClassicCommitRefusesRedirectAndMetacopy hand-makes what an overlay
// mount with redirect_dir=on or metacopy=on leaves in an upper directory —
// a directory carrying trusted.overlay.redirect, a file of holes carrying
// trusted.overlay.metacopy — and checks that classic overlay's Commit
// refuses each with ErrNotImplemented naming the entry, leaves no layer
// tree and keeps the active snapshot, while an upper without them commits.
func TestClassicCommitRefusesRedirectAndMetacopy(t *testing.T) {
	fs := loopfs.ForTest(t, "ext4", 0)
	ctx := context.Background()
	d, err := NewOverlay(ctx, filepath.Join(fs.Dir, "home"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	committedParent(t, ctx, d, fs.Dir, "parent", func(root string) error {
		if err := os.Mkdir(filepath.Join(root, "orig"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(root, "orig", "f"), []byte("data"), 0o644)
	})
	for _, c := range []struct {
		name, entry, xattr string
		value              []byte
		make               func(path string) error
	}{
		{"redirect", "moved", "trusted.overlay.redirect", []byte("/orig"), func(p string) error { return os.Mkdir(p, 0o755) }},
		{"metacopy", "f", "trusted.overlay.metacopy", nil, func(p string) error { return os.WriteFile(p, nil, 0o600) }},
		{"plain", "new", "", nil, func(p string) error { return os.WriteFile(p, []byte("x"), 0o644) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "active-" + c.name
			ms, err := d.Prepare(ctx, key, "parent")
			if err != nil {
				t.Fatal(err)
			}
			upper, ok := option(ms[0], "upperdir")
			if !ok {
				t.Fatalf("no upperdir in %v", ms[0].Options)
			}
			p := filepath.Join(upper, c.entry)
			if err := c.make(p); err != nil {
				t.Fatal(err)
			}
			if c.xattr != "" {
				if err := unix.Lsetxattr(p, c.xattr, c.value, 0); err != nil {
					t.Fatalf("set %s: %v", c.xattr, err)
				}
			}
			err = d.Commit(ctx, "layer-"+c.name, key)
			if c.xattr == "" {
				if err != nil {
					t.Fatalf("commit of a plain upper: %v", err)
				}
				return
			}
			if !errors.Is(err, drivers.ErrNotImplemented) || !strings.Contains(err.Error(), c.entry) || !strings.Contains(err.Error(), c.xattr) {
				t.Fatalf("commit of an upper with %s: %v; want ErrNotImplemented naming %s and %s", c.xattr, err, c.entry, c.xattr)
			}
			if _, err := d.Stat(ctx, "layer-"+c.name); !errors.Is(err, drivers.ErrNotFound) {
				t.Errorf("refused commit left a committed snapshot: %v", err)
			}
			if info, err := d.Stat(ctx, key); err != nil || info.Kind != drivers.KindActive {
				t.Errorf("active snapshot after the refused commit: %+v, %v", info, err)
			}
			if root := filepath.Join(filepath.Dir(upper), "root"); exists(root) {
				t.Errorf("refused commit left a layer tree at %s", root)
			}
		})
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
