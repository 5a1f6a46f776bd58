package drivertest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/mount"
)

// The crash test re-runs the test binary as a child that opens a driver
// home, plays a scenario and kills its whole process group with SIGKILL at
// its Nth step (core.WithHook); the parent reopens the home and checks it.
const (
	envCrashHome = "LAYERLAB_CRASH_HOME" // the child's driver home
	envCrashAt   = "LAYERLAB_CRASH_AT"   // the step to die at
)

// minKillPoints is what the scenario must offer every driver.
const minKillPoints = 30

// action is one step of the crash scenario.
type action struct {
	op    string // prepare, view, write, commit, remove
	key   string
	other string            // prepare/view: the parent; commit: the committed name
	files map[string]string // write: path → content
}

// crashScenario builds, commits, views and removes snapshots so that every
// step of Prepare, View, Commit and Remove is a kill point more than once.
// It ends with base ← mid committed and a4 active on base.
func crashScenario() []action {
	return []action{
		{op: "prepare", key: "a1"},
		{op: "write", key: "a1", files: map[string]string{"f1": "one", "d/f": "in a dir"}},
		{op: "commit", key: "a1", other: "base"},
		{op: "prepare", key: "a2", other: "base"},
		{op: "write", key: "a2", files: map[string]string{"f1": "one, changed", "f2": "two"}},
		{op: "commit", key: "a2", other: "mid"},
		{op: "view", key: "v", other: "mid"},
		{op: "remove", key: "v"},
		{op: "prepare", key: "t", other: "mid"},
		{op: "write", key: "t", files: map[string]string{"f3": "three"}},
		{op: "remove", key: "t"},
		{op: "prepare", key: "a3", other: "mid"},
		{op: "write", key: "a3", files: map[string]string{"f4": "four"}},
		{op: "commit", key: "a3", other: "top"},
		{op: "remove", key: "top"},
		{op: "prepare", key: "a4", other: "base"},
		{op: "write", key: "a4", files: map[string]string{"f5": "five"}},
	}
}

// snap is the model of one snapshot: what a reopened driver must show.
type snap struct {
	kind   drivers.Kind
	parent string
	files  map[string]string // the whole tree as a mount shows it
}

type model map[string]snap

// apply returns the model after a.
func (m model) apply(a action) model {
	next := model{}
	for k, v := range m {
		next[k] = v
	}
	switch a.op {
	case "prepare", "view":
		files := map[string]string{}
		for p, c := range m[a.other].files {
			files[p] = c
		}
		kind := drivers.KindActive
		if a.op == "view" {
			kind = drivers.KindView
		}
		next[a.key] = snap{kind: kind, parent: a.other, files: files}
	case "write":
		s := next[a.key]
		files := map[string]string{}
		for p, c := range s.files {
			files[p] = c
		}
		for p, c := range a.files {
			files[p] = c
		}
		s.files = files
		next[a.key] = s
	case "commit":
		s := next[a.key]
		delete(next, a.key)
		s.kind = drivers.KindCommitted
		next[a.other] = s
	case "remove":
		delete(next, a.key)
	}
	return next
}

// play runs actions on d; mounts for writes go under work.
func play(ctx context.Context, d drivers.Driver, work string, actions []action) error {
	for i, a := range actions {
		var err error
		switch a.op {
		case "prepare":
			_, err = d.Prepare(ctx, a.key, a.other)
		case "view":
			_, err = d.View(ctx, a.key, a.other)
		case "commit":
			err = d.Commit(ctx, a.other, a.key)
		case "remove":
			err = d.Remove(ctx, a.key)
		case "write":
			err = writeFiles(ctx, d, a.key, filepath.Join(work, "w"), a.files)
		}
		if err != nil {
			return fmt.Errorf("action %d (%s %s): %w", i, a.op, a.key, err)
		}
	}
	return nil
}

func writeFiles(ctx context.Context, d drivers.Driver, key, target string, files map[string]string) error {
	ms, err := d.Mounts(ctx, key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := mount.All(ms, target); err != nil {
		return err
	}
	var werr error
	for p, c := range files {
		path := filepath.Join(target, p)
		if werr = os.MkdirAll(filepath.Dir(path), 0o755); werr != nil {
			break
		}
		if werr = os.WriteFile(path, []byte(c), 0o644); werr != nil {
			break
		}
	}
	if err := mount.UnmountAll(target); err != nil {
		return err
	}
	return werr
}

// crashChild is the child's side: open the home, play the scenario, die
// at step N. It returns only when the scenario ended before step N.
func crashChild(t *testing.T, f drivers.Factory, home string) {
	at, err := strconv.Atoi(os.Getenv(envCrashAt))
	if err != nil {
		t.Fatalf("%s: %v", envCrashAt, err)
	}
	n := 0
	ctx := core.WithHook(context.Background(), func(string) {
		if n++; n == at {
			// The whole group: a tool the driver runs (zfs, dmsetup) dies
			// with it, as in a real crash.
			syscall.Kill(0, syscall.SIGKILL)
			select {}
		}
	})
	d, err := f.Open(ctx, home, nil)
	if err != nil {
		t.Fatalf("child: open: %v", err)
	}
	if err := play(ctx, d, filepath.Join(home, "..", filepath.Base(home)+"-work"), crashScenario()); err != nil {
		t.Fatalf("child: %v", err)
	}
	t.Fatalf("child: the scenario ended after %d steps, before step %d", n, at)
}

// checkCrash kills a child at every step of the scenario and checks what
// the reopened home holds. Run from Conformance on one backing store.
func checkCrash(t *testing.T, f drivers.Factory, dir string) {
	ctx := context.Background()
	// Count the steps and map each to its action, in process.
	var steps []int // steps[n-1] = index of the action step n is in
	current := 0
	counting := core.WithHook(ctx, func(string) { steps = append(steps, current) })
	home := filepath.Join(dir, "crash-count")
	work := t.TempDir()
	d, err := f.Open(counting, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range crashScenario() {
		current = i
		if err := play(counting, d, work, []action{a}); err != nil {
			d.Close()
			t.Fatal(err)
		}
	}
	if err := teardown(ctx, d, home); err != nil {
		t.Fatal(err)
	}
	if len(steps) < minKillPoints {
		t.Fatalf("the scenario has %d kill points, want at least %d", len(steps), minKillPoints)
	}
	t.Logf("%s: %d kill points", f.Name, len(steps))
	test := strings.Split(t.Name(), "/")[0]
	for n := 1; n <= len(steps); n++ {
		if !t.Run(fmt.Sprintf("step%02d", n), func(t *testing.T) {
			crashAt(t, f, dir, test, n, steps[n-1])
		}) {
			return // one failure says enough; the next homes would pile up
		}
	}
}

// crashAt runs the child killed at step n (inside action i), then reopens
// the home and checks it.
func crashAt(t *testing.T, f drivers.Factory, dir, test string, n, i int) {
	ctx := context.Background()
	home := filepath.Join(dir, fmt.Sprintf("crash-%02d", n))
	work := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashHome+"="+home, envCrashAt+"="+strconv.Itoa(n))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.CombinedOutput()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed at step %d (%v):\n%s", n, err, out)
	}
	waitGroupGone(t, cmd.Process.Pid)

	d, err := f.Open(ctx, home, nil)
	if err != nil {
		t.Fatalf("reopen after a crash at step %d (action %d): %v", n, i, err)
	}
	defer func() {
		if d != nil {
			d.Close()
		}
	}()
	if r, ok := d.(interface{ Recovery() core.Recovery }); ok && len(r.Recovery().Failed) > 0 {
		t.Errorf("recovery failed: %v", r.Recovery().Failed)
	}
	checkNoOrphans(t, ctx, d)
	actions := crashScenario()
	before := model{}
	for _, a := range actions[:i] {
		before = before.apply(a)
	}
	after := before.apply(actions[i])
	got := observe(t, ctx, d, work)
	switch {
	case same(got, after):
	case same(got, before):
		// The interrupted action left nothing: it must work again.
		if err := play(ctx, d, work, actions[i:i+1]); err != nil {
			t.Fatalf("redo the interrupted action: %v", err)
		}
	default:
		t.Fatalf("after a crash in action %d (%s %s) the home holds\n%v\nwant either\n%v\nor\n%v", i, actions[i].op, actions[i].key, got, before, after)
	}
	if err := play(ctx, d, work, actions[i+1:]); err != nil {
		t.Fatalf("play on after the crash: %v", err)
	}
	want := model{}
	for _, a := range actions {
		want = want.apply(a)
	}
	if got := observe(t, ctx, d, work); !same(got, want) {
		t.Fatalf("at the end the home holds\n%v\nwant\n%v", got, want)
	}
	checkNoOrphans(t, ctx, d)
	err = teardown(ctx, d, home)
	d = nil
	if err != nil {
		t.Fatal(err)
	}
}

// waitGroupGone waits until no process of the child's group is left (a
// tool it ran may take a moment to be reaped by init).
func waitGroupGone(t *testing.T, pgid int) {
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("processes of the killed child's group %d still run after 10s", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkNoOrphans(t *testing.T, ctx context.Context, d drivers.Driver) {
	t.Helper()
	o, ok := d.(interface {
		Orphans(context.Context) ([]string, error)
	})
	if !ok {
		return
	}
	ids, err := o.Orphans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > 0 {
		t.Errorf("storage no record names after reopen: %v", ids)
	}
}

// observe reads every snapshot and the tree a mount of it shows.
func observe(t *testing.T, ctx context.Context, d drivers.Driver, work string) model {
	t.Helper()
	m := model{}
	var infos []drivers.Info
	if err := d.Walk(ctx, func(_ context.Context, i drivers.Info) error { infos = append(infos, i); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, info := range infos {
		var ms []drivers.Mount
		var err error
		key := info.Name
		if info.Kind == drivers.KindCommitted {
			key = "observe-" + info.Name
			ms, err = d.View(ctx, key, info.Name)
		} else {
			ms, err = d.Mounts(ctx, info.Name)
		}
		if err != nil {
			t.Fatalf("%s %q: %v", info.Kind, info.Name, err)
		}
		files, err := readTree(ms, filepath.Join(work, "observe"))
		if err != nil {
			t.Fatalf("%s %q: %v", info.Kind, info.Name, err)
		}
		if key != info.Name {
			if err := d.Remove(ctx, key); err != nil {
				t.Fatal(err)
			}
		}
		m[info.Name] = snap{kind: info.Kind, parent: info.Parent, files: files}
	}
	return m
}

func readTree(ms []drivers.Mount, target string) (map[string]string, error) {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return nil, err
	}
	if err := mount.All(ms, target); err != nil {
		return nil, err
	}
	files := map[string]string{}
	werr := filepath.WalkDir(target, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(target, path)
		files[rel] = string(b)
		return err
	})
	if err := mount.UnmountAll(target); err != nil {
		return nil, err
	}
	return files, werr
}

func same(a, b model) bool {
	return a.String() == b.String()
}

func (m model) String() string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var s strings.Builder
	for _, n := range names {
		sn := m[n]
		paths := make([]string, 0, len(sn.files))
		for p := range sn.files {
			paths = append(paths, p+"="+sn.files[p])
		}
		sort.Strings(paths)
		fmt.Fprintf(&s, "  %s %s parent=%q %v\n", n, sn.kind, sn.parent, paths)
	}
	return s.String()
}

// teardown removes every snapshot, children first, closes the driver and
// deletes the home.
func teardown(ctx context.Context, d drivers.Driver, home string) error {
	for {
		var infos []drivers.Info
		if err := d.Walk(ctx, func(_ context.Context, i drivers.Info) error { infos = append(infos, i); return nil }); err != nil {
			return err
		}
		if len(infos) == 0 {
			break
		}
		parents := map[string]bool{}
		for _, i := range infos {
			parents[i.Parent] = true
		}
		for _, i := range infos {
			if !parents[i.Name] {
				if err := d.Remove(ctx, i.Name); err != nil {
					return err
				}
			}
		}
	}
	if err := d.Close(); err != nil {
		return err
	}
	os.RemoveAll(home + "-work")
	return os.RemoveAll(home)
}

// checkRemoveMounted: storage is never deleted under a live mount. Remove
// of a mounted snapshot is refused with ErrFailedPrecondition naming the
// mount point (a driver that removes deferred succeeds instead, and the
// storage goes at the unmount). A view whose mount shows only its parent's
// storage (overlay's one-layer views) may go while mounted, since that
// deletes nothing the mount uses, but then its parent is the one refused.
func checkRemoveMounted(t *testing.T, e *env) {
	e.layer("base", "", func(dir string) { e.writeFile(filepath.Join(dir, "f"), []byte("base")) })
	for _, view := range []bool{false, true} {
		key := fmt.Sprintf("mounted-%v", view)
		create := e.d.Prepare
		if view {
			create = e.d.View
		}
		ms, err := create(e.ctx, key, "base")
		if err != nil {
			t.Fatal(err)
		}
		dir := e.mount(key, ms)
		err = e.d.Remove(e.ctx, key)
		refused := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, drivers.ErrFailedPrecondition) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("remove of %s while %s is mounted at %s: got %v, want ErrFailedPrecondition naming the mount point", what, key, dir, err)
			}
		}
		switch {
		case e.d.Capabilities().DeferredRemove:
			if err != nil {
				t.Fatalf("deferred remove of mounted %s: %v", key, err)
			}
		case view && err == nil:
			refused("its parent", e.d.Remove(e.ctx, "base"))
		default:
			refused(key, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "base" {
			t.Fatalf("the mount of %s reads %q, %v after the remove", key, b, err)
		}
		e.unmount(dir)
		if err := e.d.Remove(e.ctx, key); err != nil && !errors.Is(err, drivers.ErrNotFound) {
			t.Fatalf("remove after the unmount: %v", err)
		}
	}
	if err := e.d.Remove(e.ctx, "base"); err != nil {
		t.Fatalf("remove of the parent once nothing is mounted: %v", err)
	}
}
