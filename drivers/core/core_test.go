package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// dirBackend keeps each snapshot in a directory, as vfs does without the
// copy, and fails or blocks where a test asks it to.
type dirBackend struct {
	Dirs
	mu          sync.Mutex
	failCreate  error
	failMounts  error
	failCommit  error
	gate        map[string]chan struct{} // Create of a snapshot with this label waits on it
	undone      []string
	projectBase uint32
	deferred    bool
}

func (b *dirBackend) Create(ctx context.Context, s storage.Snapshot) error {
	b.mu.Lock()
	gate, fail := b.gate[s.Labels["gate"]], b.failCreate
	b.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if err := b.Mkdir(s.ID, "fs"); err != nil {
		return err
	}
	return fail
}

func (b *dirBackend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return Bind(b.Path(s.ID, "fs"), s.Kind == drivers.KindView), b.failMounts
}

func (b *dirBackend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failCommit != nil {
		return drivers.Usage{}, b.failCommit
	}
	return drivers.Usage{Size: 1}, os.WriteFile(b.Path(s.ID, "committed"), nil, 0o600)
}

func (b *dirBackend) UndoCommit(ctx context.Context, s storage.Snapshot) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.undone = append(b.undone, s.ID)
	return os.RemoveAll(b.Path(s.ID, "committed"))
}

func (b *dirBackend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return DiskUsage(ctx, b.Path(s.ID, "fs"))
}

func (b *dirBackend) Remove(ctx context.Context, id string) error { return b.Dirs.Remove(id) }

func (b *dirBackend) ProjectBase() uint32 { return b.projectBase }

func (b *dirBackend) Capabilities() drivers.Capabilities {
	return drivers.Capabilities{DeferredRemove: b.deferred}
}

func (b *dirBackend) Close() error { return nil }

func newBackend(t *testing.T, home string) *dirBackend {
	t.Helper()
	dirs, err := NewDirs(home)
	if err != nil {
		t.Fatal(err)
	}
	return &dirBackend{Dirs: dirs, gate: map[string]chan struct{}{}}
}

func open(t *testing.T, home string, b *dirBackend) *Driver {
	t.Helper()
	d, err := Open(context.Background(), "test", home, b)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// storageIDs lists the snapshot directories on disk.
func storageIDs(t *testing.T, b *dirBackend) []string {
	t.Helper()
	ids, err := b.IDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestFailedCreateAndMountsLeaveNothing(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	boom := errors.New("boom")
	b.failCreate = boom
	if _, err := d.Prepare(ctx, "a", ""); !errors.Is(err, boom) {
		t.Fatalf("Prepare with a failing Create: %v", err)
	}
	b.failCreate, b.failMounts = nil, boom
	if _, err := d.Prepare(ctx, "a", ""); !errors.Is(err, boom) {
		t.Fatalf("Prepare with failing Mounts: %v", err)
	}
	if _, err := d.Stat(ctx, "a"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("a failed Prepare left a record: %v", err)
	}
	if ids := storageIDs(t, b); len(ids) != 0 {
		t.Errorf("a failed Prepare left storage %v", ids)
	}
	b.failMounts = nil
	if _, err := d.Prepare(ctx, "a", ""); err != nil {
		t.Fatalf("Prepare of the key again: %v", err)
	}
	if d.locks.size() != 0 {
		t.Errorf("%d key locks left", d.locks.size())
	}
}

func TestFailedCommitIsTakenBack(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	if _, err := d.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	b.failCommit = errors.New("frozen solid")
	if err := d.Commit(ctx, "c", "a"); !errors.Is(err, b.failCommit) {
		t.Fatalf("Commit: %v", err)
	}
	if info, err := d.Stat(ctx, "a"); err != nil || info.Kind != drivers.KindActive {
		t.Fatalf("after a failed commit: %+v, %v", info, err)
	}
	if len(b.undone) != 1 {
		t.Errorf("UndoCommit ran %d times, want 1", len(b.undone))
	}
	b.failCommit = nil
	if err := d.Commit(ctx, "c", "a"); err != nil {
		t.Fatalf("Commit again: %v", err)
	}
}

// crashAt runs op with a hook that panics at step, as a crash would stop
// the process there, and closes the driver like the end of the process.
func crashAt(t *testing.T, d *Driver, step string, op func(ctx context.Context) error) {
	t.Helper()
	ctx := WithHook(context.Background(), func(s string) {
		if s == step {
			panic(step)
		}
	})
	func() {
		defer func() {
			if r := recover(); r != step {
				t.Fatalf("no stop at %s (%v)", step, r)
			}
		}()
		op(ctx)
	}()
	d.Close()
}

func TestOpenFinishesAnInterruptedCommit(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	if _, err := d.Prepare(ctx, "a", "", drivers.WithLabels(map[string]string{"x": "1"})); err != nil {
		t.Fatal(err)
	}
	crashAt(t, d, "commit:frozen", func(ctx context.Context) error {
		return d.Commit(ctx, "c", "a", drivers.WithLabels(map[string]string{"y": "2"}))
	})
	d = open(t, home, b)
	if r := d.Recovery(); len(r.Finished) != 1 || r.Finished[0] != "a" || len(r.Failed) != 0 {
		t.Fatalf("recovery %+v", r)
	}
	info, err := d.Stat(ctx, "c")
	if err != nil || info.Kind != drivers.KindCommitted || info.Labels["x"] != "1" || info.Labels["y"] != "2" {
		t.Fatalf("c after recovery: %+v, %v", info, err)
	}
}

func TestOpenTakesBackACommitItCannotFinish(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	if _, err := d.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	crashAt(t, d, "commit:begun", func(ctx context.Context) error { return d.Commit(ctx, "c", "a") })
	b.failCommit = errors.New("still broken")
	d = open(t, home, b)
	if r := d.Recovery(); len(r.Undone) != 1 || len(r.Failed) != 1 || !errors.Is(r.Failed[0], b.failCommit) {
		t.Fatalf("recovery %+v", r)
	}
	if info, err := d.Stat(ctx, "a"); err != nil || info.Kind != drivers.KindActive {
		t.Fatalf("a after recovery: %+v, %v", info, err)
	}
	b.failCommit = nil
	if err := d.Commit(ctx, "c", "a"); err != nil {
		t.Fatalf("Commit after recovery: %v", err)
	}
}

// Storage made and not recorded, or left by a Remove whose record went
// first, is swept; one a mount uses is kept and reported, and the sweep
// goes on past it.
func TestSweep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	crashAt(t, d, "create:storage", func(ctx context.Context) error { _, err := d.Prepare(ctx, "a", ""); return err })
	d = open(t, home, b)
	if r := d.Recovery(); len(r.Swept) != 1 || len(r.Failed) != 0 {
		t.Fatalf("recovery %+v", r)
	}
	for _, key := range []string{"b", "c"} {
		if _, err := d.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
	}
	crashAt(t, d, "remove:recorded", func(ctx context.Context) error { return d.Remove(ctx, "b") })
	d = open(t, home, b)
	if r := d.Recovery(); len(r.Swept) != 1 {
		t.Fatalf("recovery after a crash in Remove: %+v", r)
	}
	// An orphan under a live mount, and one more orphan after it.
	ms, err := d.Mounts(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := mount.All(ms, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(target) })
	crashAt(t, d, "remove:recorded", func(ctx context.Context) error {
		// The hook runs after the mount check, so the record goes and the
		// storage stays under the mount: what a crash there leaves.
		b.deferred = true
		defer func() { b.deferred = false }()
		return d.Remove(ctx, "c")
	})
	if err := os.Mkdir(b.Path("999"), 0o700); err != nil {
		t.Fatal(err)
	}
	d = open(t, home, b)
	r := d.Recovery()
	if len(r.Failed) != 1 || !errors.Is(r.Failed[0], drivers.ErrFailedPrecondition) || len(r.Swept) != 1 || r.Swept[0] != "999" {
		t.Fatalf("recovery with a mounted orphan: %+v", r)
	}
	if orphans, _ := d.Orphans(ctx); len(orphans) != 1 {
		t.Fatalf("orphans %v, want the mounted one", orphans)
	}
	if err := mount.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = open(t, home, b)
	if orphans, _ := d.Orphans(ctx); len(orphans) != 0 || len(d.Recovery().Failed) != 0 {
		t.Fatalf("after the unmount: orphans %v, recovery %+v", orphans, d.Recovery())
	}
}

func TestRemoveRefusedWhileMounted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	ms, err := d.Prepare(ctx, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := mount.All(ms, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(target) })
	err = d.Remove(ctx, "a")
	if !errors.Is(err, drivers.ErrFailedPrecondition) || !strings.Contains(err.Error(), target) {
		t.Fatalf("Remove while mounted: %v", err)
	}
	if _, err := d.Stat(ctx, "a"); err != nil {
		t.Fatalf("the refused Remove dropped the record: %v", err)
	}
	if err := mount.UnmountAll(target); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}

// A slow Create on one key holds neither the metadata writer nor other
// keys, and nobody sees its snapshot before it is whole.
func TestSlowCreateBlocksOnlyItsKey(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	gate := make(chan struct{})
	b.gate["slow"] = gate
	done := make(chan error, 1)
	go func() {
		_, err := d.Prepare(ctx, "slow", "", drivers.WithLabels(map[string]string{"gate": "slow"}))
		done <- err
	}()
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("fast-%d", i)
		if _, err := d.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
		if err := d.Remove(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Stat(ctx, "slow"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("Stat saw the half-made snapshot: %v", err)
	}
	var seen []string
	d.Walk(ctx, func(_ context.Context, i drivers.Info) error { seen = append(seen, i.Name); return nil })
	if len(seen) != 0 {
		t.Errorf("Walk saw %v while slow was being made", seen)
	}
	select {
	case err := <-done:
		t.Fatalf("the gated Prepare returned early: %v", err)
	default:
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
}

// Two Prepares of one key: one wins, the other gets ErrAlreadyExists.
func TestSameKeyTwice(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := d.Prepare(ctx, "k", ""); errs <- err }()
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, drivers.ErrAlreadyExists):
			t.Errorf("unexpected %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d Prepares of one key succeeded", ok)
	}
	if ids := storageIDs(t, b); len(ids) != 1 {
		t.Fatalf("storage %v for one snapshot", ids)
	}
}

// Remove waits for a Usage of the same key to finish walking.
func TestUsageHoldsOffRemove(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	d := open(t, home, b)
	if _, err := d.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	unlock := d.locks.lock(nil, "a") // as Usage holds it
	removed := make(chan error, 1)
	go func() { removed <- d.Remove(ctx, "a") }()
	select {
	case err := <-removed:
		t.Fatalf("Remove went ahead under a reader: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
}

func TestLockOrderHasNoCycle(t *testing.T) {
	var l keyLocks
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); l.lock([]string{"a", "b"})() }()
		go func() { defer wg.Done(); l.lock([]string{"b"}, "a")() }()
	}
	wg.Wait()
	if l.size() != 0 {
		t.Fatalf("%d entries left", l.size())
	}
}

// Quota project ids are handed out lowest free first, survive a reopen
// and come back on Remove.
func TestProjects(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	b := newBackend(t, home)
	b.projectBase = 1000
	d := open(t, home, b)
	for _, k := range []string{"a", "b"} {
		if _, err := d.Prepare(ctx, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.View(ctx, "v", ""); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = open(t, home, b)
	if err := d.Remove(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Prepare(ctx, "c", ""); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, k := range []string{"b", "c", "v"} {
		s, err := d.get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		got[k] = s.Project
	}
	if got["b"] != 1001 || got["c"] != 1000 || got["v"] != 0 {
		t.Fatalf("projects %v, want b=1001 c=1000 (a's, released) and none for the view", got)
	}
}

func TestClosedDriver(t *testing.T) {
	home := t.TempDir()
	d := open(t, home, newBackend(t, home))
	d.Close()
	if _, err := d.Prepare(context.Background(), "a", ""); !errors.Is(err, drivers.ErrClosed) {
		t.Fatalf("Prepare after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, MetadataFile)); err != nil {
		t.Fatal(err)
	}
}

// Open sweeps the scratch directories a crash mid-probe leaves, and the
// mount a probe had made in one.
func TestOpenSweepsScratch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bind mounts need root")
	}
	home := t.TempDir()
	merged := filepath.Join(home, ".probe-123", "merged")
	if err := os.MkdirAll(merged, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".reflink-9", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(Bind(t.TempDir(), true), merged); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mount.UnmountAll(merged) })
	d := open(t, home, newBackend(t, home))
	if r := d.Recovery(); len(r.Failed) != 0 {
		t.Fatalf("recovery %+v", r)
	}
	for _, p := range []string{".probe-123", ".reflink-9"} {
		if _, err := os.Stat(filepath.Join(home, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the open: %v", p, err)
		}
	}
}
