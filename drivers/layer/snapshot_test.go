package layer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/layer"
)

// TestDiffSnapshotMatchesGeneric makes the same changes on every host
// driver, then checks that DiffSnapshot (native on overlay, overlay2 and
// btrfs, the view walk elsewhere) and the generic Diff of mounted views write the
// same files, and that each layer applied on the parent gives back the
// changed tree exactly.
func TestDiffSnapshotMatchesGeneric(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "snapshots on drivers need root")
	}
	native := map[string]bool{"overlay": true, "overlay2": true} // drivers.Differ
	walks := map[string]bool{"btrfs": true}                      // drivers.ChangeWalker
	for _, d := range hostDrivers() {
		t.Run(d.factory.Name, func(t *testing.T) {
			ctx := context.Background()
			home := filepath.Join(d.store(t), "home")
			if p := d.factory.Probe(home); !p.Available() {
				feature.Skip(t, d.factory.Name, "%s", p.Reason)
			}
			drv, err := d.factory.Open(ctx, home, nil)
			mustDo(t, err)
			t.Cleanup(func() { drv.Close() })

			_, cerr := drv.(drivers.Differ).Changes(ctx, "missing")
			switch {
			case native[d.factory.Name] && !errors.Is(cerr, drivers.ErrNotFound):
				t.Fatalf("Changes of a missing key: %v, want ErrNotFound", cerr)
			case !native[d.factory.Name] && !errors.Is(cerr, drivers.ErrNotImplemented):
				t.Fatalf("Changes on %s: %v, want ErrNotImplemented", d.factory.Name, cerr)
			}
			werr := drv.(drivers.ChangeWalker).WalkChanges(ctx, "missing", nil, nil)
			switch {
			case walks[d.factory.Name] && !errors.Is(werr, drivers.ErrNotFound):
				t.Fatalf("WalkChanges of a missing key: %v, want ErrNotFound", werr)
			case !walks[d.factory.Name] && !errors.Is(werr, drivers.ErrNotImplemented):
				t.Fatalf("WalkChanges on %s: %v, want ErrNotImplemented", d.factory.Name, werr)
			}

			withMount(t, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, "p-active", "") }, func(dir string) {
				for _, dd := range []string{"etc", "usr/bin", "data/sub", "gone/deep", "keep"} {
					mustDo(t, os.MkdirAll(filepath.Join(dir, dd), 0o755))
				}
				for _, f := range []string{"etc/passwd", "etc/hosts", "usr/bin/tool", "data/one", "data/sub/two", "gone/x", "gone/deep/y", "modme", "chmodme", "keep/k"} {
					mustDo(t, os.WriteFile(filepath.Join(dir, f), []byte("parent "+f+"\n"), 0o644))
				}
				mustDo(t, os.Symlink("/usr/bin/tool", filepath.Join(dir, "tool-link")))
			})
			mustDo(t, drv.Commit(ctx, "p", "p-active"))
			withMount(t, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, "c-active", "p") }, func(dir string) {
				at := func(p string) string { return filepath.Join(dir, p) }
				mustDo(t, os.WriteFile(at("new.txt"), []byte("new\n"), 0o600))
				mustDo(t, os.MkdirAll(at("opt/app"), 0o750))
				mustDo(t, os.WriteFile(at("opt/app/cfg"), bytes.Repeat([]byte("x"), 10000), 0o644))
				mustDo(t, os.WriteFile(at("modme"), []byte("changed\n"), 0o644))
				mustDo(t, os.Chmod(at("chmodme"), 0o600))
				mustDo(t, os.Remove(at("etc/hosts")))
				mustDo(t, os.RemoveAll(at("gone")))
				mustDo(t, os.RemoveAll(at("data")))
				mustDo(t, os.MkdirAll(at("data"), 0o755))
				mustDo(t, os.WriteFile(at("data/fresh"), []byte("fresh\n"), 0o644))
				mustDo(t, os.Link(at("new.txt"), at("new-link.txt")))
				mustDo(t, os.Remove(at("tool-link")))
				mustDo(t, os.Symlink("usr/bin/tool", at("tool-link")))
			})
			mustDo(t, drv.Commit(ctx, "c", "c-active"))

			var nat, gen bytes.Buffer
			nd, err := layer.DiffSnapshot(ctx, &nat, drv, "c")
			mustDo(t, err)
			withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-p", "p") }, func(lower string) {
				withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-c", "c") }, func(upper string) {
					_, err := layer.Diff(ctx, &gen, lower, upper)
					mustDo(t, err)
				})
			})
			mustDo(t, drv.Remove(ctx, "v-p"))
			mustDo(t, drv.Remove(ctx, "v-c"))
			if nd.Size != int64(nat.Len()) {
				t.Errorf("DiffSnapshot says %d bytes, wrote %d", nd.Size, nat.Len())
			}
			// Compressed, the blob is one zstd stream of the same tar,
			// also where the driver declined to walk and the views were
			// diffed instead.
			var zst bytes.Buffer
			zd, err := layer.DiffSnapshot(ctx, &zst, drv, "c", layer.WithCompression(compression.Zstd))
			mustDo(t, err)
			dec, err := compression.DecompressStream(bytes.NewReader(zst.Bytes()))
			mustDo(t, err)
			plain, err := io.ReadAll(dec)
			mustDo(t, err)
			if !bytes.Equal(plain, nat.Bytes()) || zd.DiffID != nd.DiffID || zd.Size != int64(zst.Len()) {
				t.Errorf("zstd DiffSnapshot: %d bytes decompress to %d (want the %d of the plain diff), DiffID %s vs %s", zst.Len(), len(plain), nat.Len(), zd.DiffID, nd.DiffID)
			}
			if n, g := files(t, nat.Bytes()), files(t, gen.Bytes()); n != g {
				t.Errorf("the diffs carry different files:\nnative:  %s\ngeneric: %s", n, g)
			}
			if native[d.factory.Name] && !strings.Contains(headerList(t, nat.Bytes()), "data/.wh..wh..opq") {
				t.Errorf("the native diff of %s has no opaque marker for the replaced directory: it did not read the upper directory", d.factory.Name)
			}
			for i, l := range [][]byte{nat.Bytes(), gen.Bytes()} {
				name := fmt.Sprintf("applied-%d", i)
				withMount(t, func() ([]drivers.Mount, error) { return drv.Prepare(ctx, name, "p") }, func(dir string) {
					_, err := layer.Apply(ctx, dir, bytes.NewReader(l))
					mustDo(t, err)
				})
				mustDo(t, drv.Commit(ctx, name+"-c", name))
				var want, got string
				withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-want", "c") }, func(dir string) { want = tree(t, dir) })
				withMount(t, func() ([]drivers.Mount, error) { return drv.View(ctx, "v-got", name+"-c") }, func(dir string) { got = tree(t, dir) })
				mustDo(t, drv.Remove(ctx, "v-want"))
				mustDo(t, drv.Remove(ctx, "v-got"))
				if got != want {
					t.Errorf("layer %d applied on the parent differs from the changed snapshot:\ngot:  %s\nwant: %s", i, got, want)
				}
			}
		})
	}
}

// files lists the layer's entries other than whiteouts, with type, mode
// and size, sorted.
func files(t *testing.T, data []byte) string {
	hs, err := headers(bytes.NewReader(data))
	mustDo(t, err)
	var out []string
	for _, h := range hs {
		name := strings.Fields(h)[0]
		if strings.HasPrefix(filepath.Base(name), ".wh.") {
			continue
		}
		out = append(out, strings.Join(strings.Fields(h)[:5], " "))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// headerList names the layer's entries in order.
func headerList(t *testing.T, data []byte) string {
	hs, err := headers(bytes.NewReader(data))
	mustDo(t, err)
	var names []string
	for _, h := range hs {
		names = append(names, strings.Fields(h)[0])
	}
	return strings.Join(names, " ")
}

// tree describes every entry under dir: type and permissions, owner, link
// count, size, a hash of the content or the link target, and, for all but
// directories (whose times a layer need not carry), the mtime in seconds,
// the precision a tar header keeps.
func tree(t *testing.T, dir string) string {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d n%d", rel, st.Mode, st.Uid, st.Gid, st.Nlink)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %d %s t%d", st.Size, digest.FromBytes(data).Encoded()[:12], st.Mtim.Sec)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" ->%s t%d", target, st.Mtim.Sec)
		case unix.S_IFDIR:
			line = fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		}
		out = append(out, line)
		return nil
	})
	mustDo(t, err)
	return strings.Join(out, "; ")
}
