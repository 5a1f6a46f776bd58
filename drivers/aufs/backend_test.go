package aufs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
)

// newTestBackend lays out a backend under a temp home without probing:
// what it does with directories and mount descriptions needs no aufs.
func newTestBackend(t *testing.T) *backend {
	t.Helper()
	home := t.TempDir()
	dirs, err := core.NewDirs(home)
	if err != nil {
		t.Fatal(err)
	}
	links, err := core.NewLinks(home)
	if err != nil {
		t.Fatal(err)
	}
	return &backend{dirs: dirs, home: home, links: links, max: DefaultMaxBranches, feat: features{dirperm1: true}}
}

func TestBackendLayout(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	active := storage.Snapshot{ID: "3", Kind: drivers.KindActive, ParentIDs: []string{"2", "1"}}
	view := storage.Snapshot{ID: "4", Kind: drivers.KindView, ParentIDs: []string{"2", "1"}}
	for _, s := range []storage.Snapshot{active, view} {
		if err := b.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if dst, err := os.Readlink(b.links.Path("3")); err != nil || dst != "../snapshots/3/fs" {
		t.Fatalf("link of the active snapshot: %q %v", dst, err)
	}
	if _, err := os.Lstat(b.links.Path("4")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a view got a link: %v", err)
	}
	if st, err := os.Stat(b.links.Path("3")); err != nil || !st.IsDir() {
		t.Fatalf("link does not reach the branch: %v", err)
	}
	if err := os.WriteFile(filepath.Join(b.dirs.Path("3", "fs"), "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	u, err := b.Commit(ctx, active)
	if err != nil || u.Size < 64<<10 || u.Inodes < 2 {
		t.Fatalf("commit usage %+v %v", u, err)
	}
	ids, err := b.IDs(ctx)
	if err != nil || len(ids) != 2 {
		t.Fatalf("ids %v %v", ids, err)
	}
	for _, id := range []string{"3", "4", "3"} { // removing twice is fine
		if err := b.Remove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(b.links.Path("3")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("link survived Remove: %v", err)
	}
	if _, err := os.Stat(b.dirs.Path("3")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory survived Remove: %v", err)
	}
}

func TestBackendMounts(t *testing.T) {
	b := newTestBackend(t)
	bind := func(ms []drivers.Mount, src, mode string) {
		t.Helper()
		if len(ms) != 1 || ms[0].Type != "bind" || ms[0].Source != src || !contains(ms[0].Options, mode) {
			t.Fatalf("want a %s bind of %s, got %+v", mode, src, ms)
		}
	}
	ms, err := b.Mounts(storage.Snapshot{ID: "1", Kind: drivers.KindActive})
	if err != nil {
		t.Fatal(err)
	}
	bind(ms, b.dirs.Path("1", "fs"), "rw")
	ms, _ = b.Mounts(storage.Snapshot{ID: "2", Kind: drivers.KindView})
	bind(ms, b.dirs.Path("2", "fs"), "ro")
	ms, _ = b.Mounts(storage.Snapshot{ID: "3", Kind: drivers.KindView, ParentIDs: []string{"1"}})
	bind(ms, b.dirs.Path("1", "fs"), "ro")

	ms, err = b.Mounts(storage.Snapshot{ID: "5", Kind: drivers.KindActive, ParentIDs: []string{"4", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "br:" + b.links.Path("5") + "=rw:" + b.links.Path("4") + "=ro+wh:" + b.links.Path("1") + "=ro+wh"
	if len(ms) != 1 || ms[0].Type != "aufs" || ms[0].Options[0] != want || !contains(ms[0].Options, "xino="+xinoPath(b.home, "5")) || !contains(ms[0].Options, "dirperm1") {
		t.Fatalf("active on two parents: %+v, want %s", ms, want)
	}
	ms, err = b.Mounts(storage.Snapshot{ID: "6", Kind: drivers.KindView, ParentIDs: []string{"4", "1"}})
	if err != nil || len(ms) != 1 || !contains(ms[0].Options, "ro") || !contains(ms[0].Options, "br:"+b.links.Path("4")+"=ro+wh:"+b.links.Path("1")+"=ro+wh") {
		t.Fatalf("view of two parents: %+v %v", ms, err)
	}
}

// A chain deeper than the branch limit is refused saying what to do; at
// the limit a view mounts and an active snapshot, whose rw branch counts,
// does not.
func TestBackendBranchLimit(t *testing.T) {
	b := newTestBackend(t)
	parents := make([]string, DefaultMaxBranches)
	for i := range parents {
		parents[i] = string(rune('a'+i%26)) + strings.Repeat("x", i/26)
	}
	if _, err := b.Mounts(storage.Snapshot{ID: "v", Kind: drivers.KindView, ParentIDs: parents}); err != nil {
		t.Fatalf("view of %d parents: %v", len(parents), err)
	}
	_, err := b.Mounts(storage.Snapshot{ID: "a", Kind: drivers.KindActive, ParentIDs: parents})
	if !errors.Is(err, drivers.ErrFailedPrecondition) || !strings.Contains(err.Error(), "at most 127") || !strings.Contains(err.Error(), "CONFIG_AUFS_BRANCH_MAX") {
		t.Fatalf("active on %d parents: %v", len(parents), err)
	}
	a := storage.Snapshot{ID: "a", Kind: drivers.KindActive, ParentIDs: parents}
	if err := b.Create(context.Background(), a); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("Create of an active on %d parents: %v", len(parents), err)
	}
	if _, err := os.Stat(b.dirs.Path("a")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused snapshot left storage: %v", err)
	}
}

// Prepare and View past the branch limit are refused by the driver, with
// the limit and what to do, before anything is mounted or recorded: with a
// limit of 3 branches a view takes 3 parents and an active snapshot 2.
func TestPrepareBeyondTheBranchLimit(t *testing.T) {
	ctx := context.Background()
	b := newTestBackend(t)
	b.max = 3
	b.caps = capabilities(b.max)
	d, err := core.Open(ctx, Name, b.home, b)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.Capabilities().MaxDepth; got != 3 {
		t.Fatalf("MaxDepth %d, want the branch limit 3", got)
	}
	parent := ""
	for _, name := range []string{"l1", "l2", "l3"} {
		if _, err := d.Prepare(ctx, name+"-active", parent); err != nil {
			t.Fatalf("prepare on %q: %v", parent, err)
		}
		if err := d.Commit(ctx, name, name+"-active"); err != nil {
			t.Fatal(err)
		}
		parent = name
	}
	ms, err := d.View(ctx, "view", "l3")
	if err != nil || len(ms) != 1 || !contains(ms[0].Options, "ro") {
		t.Fatalf("view of 3 parents under a limit of 3: %+v %v", ms, err)
	}
	_, err = d.Prepare(ctx, "too-deep", "l3")
	if !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Fatalf("active on 3 parents under a limit of 3: %v, want ErrFailedPrecondition", err)
	}
	for _, want := range []string{"needs 4 branches", "at most 3", "CONFIG_AUFS_BRANCH_MAX_3", "125 layers", "squash"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if _, err := d.Stat(ctx, "too-deep"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("the refused snapshot was recorded: %v", err)
	}
	ids, err := b.IDs(ctx)
	if err != nil || len(ids) != 4 { // l1, l2, l3 and the view
		t.Errorf("storage after the refusal: %v %v, want 4 directories", ids, err)
	}
}
