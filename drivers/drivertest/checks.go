package drivertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

const mib = 1 << 20

// used returns the bytes in use on the filesystem holding path, after
// flushing it so delayed allocation is counted.
func used(t *testing.T, path string) int64 {
	t.Helper()
	if err := mount.SyncFS(path); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// backingUsed returns the measure checkCapabilities holds a driver to,
// and its name: the driver's own report when it keeps its data outside its
// home (drivers.SpaceReporter; the filesystems at paths are flushed first,
// so that what they cache is allocated), else statfs of the filesystems at
// paths, the fullest of them.
func (e *env) backingUsed(t *testing.T) (string, func(paths ...string) int64) {
	if r, ok := e.d.(drivers.SpaceReporter); ok {
		return "the driver's report of its backing store", func(paths ...string) int64 {
			for _, p := range paths {
				if err := mount.SyncFS(p); err != nil {
					t.Fatal(err)
				}
			}
			n, err := r.BackingUsed(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return "statfs", func(paths ...string) int64 {
		var n int64
		for _, p := range paths {
			n = max(n, used(t, p))
		}
		return n
	}
}

// checkCapabilities measures on the backing store what creating a child
// and appending one byte to a file it inherits cost, and holds the result
// against the declared granularity.
func checkCapabilities(t *testing.T, e *env) {
	const size = 32 * mib
	caps := e.d.Capabilities()
	e.layer("parent", "", func(dir string) {
		e.writeFile(filepath.Join(dir, "big"), randomBytes(size, 1))
	})
	how, usedBy := e.backingUsed(t)
	before := usedBy(e.home)
	ms, err := e.d.Prepare(e.ctx, "child", "parent")
	if err != nil {
		t.Fatal(err)
	}
	dir := e.mount("child", ms)
	afterPrepare := usedBy(e.home)
	f, err := os.OpenFile(filepath.Join(dir, "big"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	afterWrite := usedBy(dir, e.home)
	prepareGrowth, writeGrowth := afterPrepare-before, afterWrite-afterPrepare
	t.Logf("%s (%s, %s): prepare grew the backing store by %d KiB, a 1-byte append to a %d MiB inherited file by %d KiB (measured by %s)",
		e.factory.Name, caps.Strategy, caps.Granularity, prepareGrowth>>10, size/mib, writeGrowth>>10, how)
	small, whole := int64(size/4), int64(size*9/10)
	switch caps.Granularity {
	case drivers.GranularitySnapshot:
		if prepareGrowth < whole || writeGrowth > small {
			t.Errorf("declared snapshot granularity, but creation copied %d KiB and the append %d KiB", prepareGrowth>>10, writeGrowth>>10)
		}
	case drivers.GranularityFile:
		if prepareGrowth > small || writeGrowth < whole {
			t.Errorf("declared file granularity, but creation copied %d KiB and the append %d KiB (want the whole file copied up)", prepareGrowth>>10, writeGrowth>>10)
		}
	case drivers.GranularityBlock:
		if prepareGrowth > small || writeGrowth > small {
			t.Errorf("declared block granularity, but creation copied %d KiB and the append %d KiB", prepareGrowth>>10, writeGrowth>>10)
		}
	default:
		t.Errorf("unknown granularity %q", caps.Granularity)
	}
}

// usageAllowance is the room checkUsage gives a child's usage above the
// 10% margin, for the metadata blocks a driver rewrites when a snapshot
// adds one file: btrfs copies the 16 KiB tree nodes on the path to the
// new file into the child's exclusive bytes, zfs rewrites the dnode,
// directory and indirect blocks up to the clone's root (zfs-fuse: +104
// KiB measured), an overlay upper directory holds its own root directory
// block, and a dm-thin device maps whole 64 KiB pool blocks, for the data
// and for the lazily initialised journal blocks ext4 writes first in the
// child. 256 KiB is a quarter of what the child adds, a small fraction of
// the 8 MiB parent it must not report.
const usageAllowance = 256 << 10

// checkUsage writes a known amount into a snapshot, then commits it and
// adds a file in a child of it. Usage means what a snapshot adds on top of
// its parent, so the parent's usage is what it wrote and the child's is
// the one file, not the parent's data it sees through.
func checkUsage(t *testing.T, e *env) {
	const size = 8 * mib
	ms, err := e.d.Prepare(e.ctx, "u", "")
	if err != nil {
		t.Fatal(err)
	}
	dir := e.mount("u", ms)
	e.writeFile(filepath.Join(dir, "data"), randomBytes(size, 2))
	for i := 0; i < 10; i++ {
		e.writeFile(filepath.Join(dir, fmt.Sprintf("small-%d", i)), []byte("x"))
	}
	e.unmount(dir)
	within := func(what string, u drivers.Usage) {
		t.Helper()
		if u.Size < size*9/10 || u.Size > size*11/10 {
			t.Errorf("%s usage %d bytes, wrote %d (want within 10%%)", what, u.Size, size)
		}
		if u.Inodes < 11 || u.Inodes > 13 {
			t.Errorf("%s usage %d inodes, made 11 files and a root", what, u.Inodes)
		}
	}
	u, err := e.d.Usage(e.ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	within("active", u)
	if err := e.d.Commit(e.ctx, "uc", "u"); err != nil {
		t.Fatal(err)
	}
	parent, err := e.d.Usage(e.ctx, "uc")
	if err != nil {
		t.Fatal(err)
	}
	within("committed", parent)

	const added = 1 * mib
	if ms, err = e.d.Prepare(e.ctx, "child", "uc"); err != nil {
		t.Fatal(err)
	}
	dir = e.mount("child", ms)
	e.writeFile(filepath.Join(dir, "added"), randomBytes(added, 3))
	e.unmount(dir)
	child := func(what string, u drivers.Usage) {
		t.Helper()
		t.Logf("%s child of a parent of %d KiB in %d inodes, after adding a %d KiB file: %d KiB in %d inodes",
			what, parent.Size>>10, parent.Inodes, added>>10, u.Size>>10, u.Inodes)
		if u.Size < added*9/10 || u.Size > added*11/10+usageAllowance {
			t.Errorf("%s child usage %d bytes, added %d (want within 10%% + %d KiB of metadata); the parent holds %d",
				what, u.Size, added, usageAllowance>>10, parent.Size)
		}
		if u.Size > parent.Size/4 {
			t.Errorf("%s child usage %d bytes counts its parent's %d", what, u.Size, parent.Size)
		}
		// One file; an overlay upper directory counts its root too.
		if u.Inodes < 1 || u.Inodes > 2 {
			t.Errorf("%s child usage %d inodes, added one file to a parent of %d", what, u.Inodes, parent.Inodes)
		}
	}
	if u, err = e.d.Usage(e.ctx, "child"); err != nil {
		t.Fatal(err)
	}
	child("active", u)
	if err := e.d.Commit(e.ctx, "childc", "child"); err != nil {
		t.Fatal(err)
	}
	if u, err = e.d.Usage(e.ctx, "childc"); err != nil {
		t.Fatal(err)
	}
	child("committed", u)
}

// checkConcurrent has 50 goroutines prepare, mount, write, read back,
// unmount and remove at once, then checks nothing is left or mixed up.
func checkConcurrent(t *testing.T, e *env) {
	e.layer("base", "", func(dir string) { e.writeFile(filepath.Join(dir, "shared"), []byte("base")) })
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- concurrentOne(e, i)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	var names []string
	e.d.Walk(e.ctx, func(_ context.Context, i drivers.Info) error { names = append(names, i.Name); return nil })
	kept := 0
	for _, n := range names {
		if strings.HasPrefix(n, "keep-") {
			kept++
		} else if n != "base" {
			t.Errorf("snapshot %q left after its remove", n)
		}
	}
	if kept != 25 {
		t.Errorf("%d committed snapshots survived, want 25: %v", kept, names)
	}
}

func concurrentOne(e *env, i int) error {
	key := fmt.Sprintf("c-%d", i)
	ms, err := e.d.Prepare(e.ctx, key, "base")
	if err != nil {
		return err
	}
	target := filepath.Join(e.work, key)
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := mountAll(ms, target); err != nil {
		return err
	}
	want := []byte(key)
	werr := os.WriteFile(filepath.Join(target, "own"), want, 0o644)
	got, rerr := os.ReadFile(filepath.Join(target, "own"))
	shared, serr := os.ReadFile(filepath.Join(target, "shared"))
	if err := unmountAll(target); err != nil {
		return err
	}
	if err := errors.Join(werr, rerr, serr); err != nil {
		return err
	}
	if !bytes.Equal(got, want) || string(shared) != "base" {
		return fmt.Errorf("%s read %q and %q, want %q and %q", key, got, shared, want, "base")
	}
	if i%2 == 0 {
		return e.d.Commit(e.ctx, "keep-"+key, key)
	}
	return e.d.Remove(e.ctx, key)
}

// checkReopen closes the driver while goroutines are busy with it, reopens
// it, and checks every surviving snapshot is whole. A goroutine that fails
// before the close is a failure of the check, reported at once: the close
// happens then, so the others stop, instead of the check waiting for a
// start that never comes.
func checkReopen(t *testing.T, e *env) {
	const workers = 8
	e.layer("base", "", func(dir string) { e.writeFile(filepath.Join(dir, "f"), []byte("base")) })
	closing := make(chan struct{})          // closed just before e.d.Close
	started := make(chan struct{}, workers) // one per worker that made 3 snapshots
	failed := make(chan error, workers)     // errors from before the close
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			err := reopenWorker(e, g, started)
			select {
			case <-closing: // closed under it: expected
			default:
				failed <- fmt.Errorf("worker %d before Close: %w", g, err)
			}
		}(g)
	}
	var early error
	for n := 0; n < workers && early == nil; {
		select {
		case <-started:
			n++
		case early = <-failed:
		}
	}
	close(closing)
	cerr := e.d.Close()
	wg.Wait()
	close(failed)
	for err := range failed { // failed just before the close, after the loop
		if early == nil {
			early = err
		} else {
			t.Error(err)
		}
	}
	if early != nil {
		t.Fatal(early)
	}
	if cerr != nil {
		t.Fatalf("close: %v", cerr)
	}
	if _, err := e.d.Stat(e.ctx, "base"); !errors.Is(err, drivers.ErrClosed) {
		t.Errorf("Stat after Close: got %v, want ErrClosed", err)
	}
	e.open()
	var infos []drivers.Info
	if err := e.d.Walk(e.ctx, func(_ context.Context, i drivers.Info) error { infos = append(infos, i); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(infos) < 9 {
		t.Fatalf("only %d snapshots after reopen; the goroutines made more", len(infos))
	}
	for _, info := range infos {
		var ms []drivers.Mount
		var err error
		switch info.Kind {
		case drivers.KindCommitted:
			ms, err = e.d.View(e.ctx, "check-"+info.Name, info.Name)
		default:
			ms, err = e.d.Mounts(e.ctx, info.Name)
		}
		if err != nil {
			t.Fatalf("%s %q after reopen: %v", info.Kind, info.Name, err)
		}
		dir := e.mount("check-"+info.Name, ms)
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "base" {
			t.Errorf("%s %q after reopen: f is %q, %v", info.Kind, info.Name, b, err)
		}
		e.unmount(dir)
	}
}

// reopenWorker prepares, commits and removes snapshots on base until a
// call fails, which it returns; it signals started once it has prepared
// three.
func reopenWorker(e *env, g int, started chan<- struct{}) error {
	for i := 0; ; i++ {
		key := fmt.Sprintf("r-%d-%d", g, i)
		if _, err := e.d.Prepare(e.ctx, key, "base"); err != nil {
			return err
		}
		if i == 2 {
			started <- struct{}{}
		}
		var err error
		switch i % 3 {
		case 0:
			err = e.d.Commit(e.ctx, "rc-"+key, key)
		case 1:
			err = e.d.Remove(e.ctx, key)
		}
		if err != nil {
			return err
		}
	}
}

// checkChain128 commits 128 layers, each overwriting one file and adding
// another, and checks a view of the top sees all of them. A driver whose
// declared MaxDepth is lower (aufs's 127 branches) is held to that depth,
// and must refuse an active snapshot on top of it, saying the limit, and
// record nothing for it.
func checkChain128(t *testing.T, e *env) {
	depth := 128
	if m := e.d.Capabilities().MaxDepth; m > 0 && m < depth {
		depth = m
		t.Logf("%s declares a maximum depth of %d layers; checking that depth", e.factory.Name, m)
	}
	parent := ""
	for i := 0; i < depth; i++ {
		name := fmt.Sprintf("layer-%03d", i)
		e.layer(name, parent, func(dir string) {
			e.writeFile(filepath.Join(dir, "top"), []byte(name))
			e.writeFile(filepath.Join(dir, name), []byte(name))
		})
		parent = name
	}
	ms, err := e.d.View(e.ctx, "view", parent)
	if err != nil {
		t.Fatal(err)
	}
	dir := e.mount("view", ms)
	if b, _ := os.ReadFile(filepath.Join(dir, "top")); string(b) != parent {
		t.Errorf("top is %q, want %q", b, parent)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	sort.Strings(names)
	if len(names) != depth+1 || names[0] != "layer-000" || names[depth-1] != fmt.Sprintf("layer-%03d", depth-1) {
		t.Errorf("view of a %d-layer chain lists %d entries, want %d", depth, len(names), depth+1)
	}
	if depth == 128 {
		return
	}
	_, err = e.d.Prepare(e.ctx, "too-deep", parent)
	switch {
	case !errors.Is(err, drivers.ErrFailedPrecondition) && !errors.Is(err, drivers.ErrInvalidArgument):
		t.Errorf("prepare on a chain of the declared maximum depth %d: got %v, want ErrFailedPrecondition or ErrInvalidArgument", depth, err)
	case !strings.Contains(err.Error(), strconv.Itoa(depth)):
		t.Errorf("the refusal %q does not name the limit %d", err, depth)
	}
	if _, err := e.d.Stat(e.ctx, "too-deep"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("the refused snapshot: Stat says %v, want ErrNotFound", err)
	}
}

// checkErrors checks each misuse returns the right sentinel and a message
// that names what was wrong.
func checkErrors(t *testing.T, e *env) {
	e.layer("committed", "", func(string) {})
	if _, err := e.d.Prepare(e.ctx, "active", "committed"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.d.View(e.ctx, "view", "committed"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what    string
		err     error
		want    error
		mention string
	}{
		{"prepare with empty key", prepareErr(e, "", ""), drivers.ErrInvalidArgument, "empty"},
		{"prepare with NUL in key", prepareErr(e, "a\x00b", ""), drivers.ErrInvalidArgument, "NUL"},
		{"prepare on a missing parent", prepareErr(e, "x", "nosuch"), drivers.ErrNotFound, "nosuch"},
		{"prepare on an active parent", prepareErr(e, "x", "active"), drivers.ErrInvalidArgument, "active"},
		{"prepare an existing key", prepareErr(e, "active", "committed"), drivers.ErrAlreadyExists, "active"},
		{"view an existing key", viewErr(e, "view", "committed"), drivers.ErrAlreadyExists, "view"},
		{"commit a view", e.d.Commit(e.ctx, "x", "view"), drivers.ErrFailedPrecondition, "view"},
		{"commit a missing key", e.d.Commit(e.ctx, "x", "nosuch"), drivers.ErrNotFound, "nosuch"},
		{"commit onto an existing name", e.d.Commit(e.ctx, "committed", "active"), drivers.ErrAlreadyExists, "committed"},
		{"remove a missing key", e.d.Remove(e.ctx, "nosuch"), drivers.ErrNotFound, "nosuch"},
		{"remove a parent", e.d.Remove(e.ctx, "committed"), drivers.ErrFailedPrecondition, "committed"},
		{"mounts of a committed snapshot", mountsErr(e, "committed"), drivers.ErrFailedPrecondition, "committed"},
		{"stat a missing key", statErr(e, "nosuch"), drivers.ErrNotFound, "nosuch"},
		{"update the parent field", updateErr(e, "active", "parent"), drivers.ErrInvalidArgument, "parent"},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.err, c.want)
		} else if !strings.Contains(c.err.Error(), c.mention) {
			t.Errorf("%s: message %q does not mention %q", c.what, c.err, c.mention)
		}
	}
	// Nothing was lost on the way.
	for _, k := range []string{"committed", "active", "view"} {
		if _, err := e.d.Stat(e.ctx, k); err != nil {
			t.Errorf("%s after the failed calls: %v", k, err)
		}
	}
}

// checkBadOpen checks the factory refuses bad homes and options.
func checkBadOpen(t *testing.T, e *env) {
	file := filepath.Join(e.work, "file")
	e.writeFile(file, nil)
	for _, c := range []struct {
		what string
		home string
		opts drivers.Options
	}{
		{"relative home", "relative/home", nil},
		{"home is a file", file, nil},
		{"unknown option", filepath.Join(e.work, "h"), drivers.Options{"nosuch": "1"}},
	} {
		d, err := e.factory.Open(e.ctx, c.home, c.opts)
		if err == nil {
			d.Close()
			t.Errorf("%s: opened", c.what)
		} else if !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", c.what, err)
		}
	}
	// Through a registry too, whose probe must keep the class.
	r := drivers.NewRegistry(e.factory)
	if d, err := r.Open(e.ctx, e.factory.Name, "relative/home", nil); err == nil {
		d.Close()
		t.Errorf("registry: relative home: opened")
	} else if !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("registry: relative home: got %v, want ErrInvalidArgument", err)
	}
}

func prepareErr(e *env, key, parent string) error {
	_, err := e.d.Prepare(e.ctx, key, parent)
	return err
}

func viewErr(e *env, key, parent string) error {
	_, err := e.d.View(e.ctx, key, parent)
	return err
}

func mountsErr(e *env, key string) error {
	_, err := e.d.Mounts(e.ctx, key)
	return err
}

func statErr(e *env, key string) error {
	_, err := e.d.Stat(e.ctx, key)
	return err
}

func updateErr(e *env, key, field string) error {
	_, err := e.d.Update(e.ctx, drivers.Info{Name: key, Parent: "x"}, field)
	return err
}
