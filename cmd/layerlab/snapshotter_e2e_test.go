package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/drivers/containerd"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// proxyEnv is containerd with overlay2, btrfs and zfs served by
// `layerlab snapshotter serve`, one process each, and busybox imported
// for each.
type proxyEnv struct {
	c       *ctrd
	archive string
	serves  map[string]*serveProc // by driver name
}

func newProxyEnv(t *testing.T) proxyEnv {
	t.Helper()
	needContainerd(t)
	dir := t.TempDir()
	archive := archiveForContainerd(t, dir)
	btrfs := loopfs.ForTest(t, "btrfs", 1<<30)
	zfs := loopfs.ZFSForTest(t)
	e := proxyEnv{archive: archive, serves: map[string]*serveProc{}}
	var list []*serveProc
	for name, root := range map[string]string{
		"overlay2": filepath.Join(dir, "overlay2"),
		"btrfs":    filepath.Join(btrfs.Dir, "layerlab"),
		"zfs":      filepath.Join(zfs.Dir, "layerlab"),
	} {
		s := &serveProc{name: name, root: root, addr: filepath.Join(dir, "run", name+".sock"), log: filepath.Join(dir, "serve-"+name+".log")}
		s.start(t)
		t.Cleanup(func() {
			if err := s.stop(t); err != nil {
				t.Errorf("serve %s: %v", s.name, err)
			}
			if _, err := os.Stat(s.addr); !os.IsNotExist(err) {
				t.Errorf("socket %s after serve stopped: %v", s.addr, err)
			}
		})
		e.serves[name] = s
		list = append(list, s)
	}
	e.c = startContainerd(t, dir, list, "layerlab-overlay2")
	return e
}

// TestContainerdProxySnapshotters: containerd 1.6 imports and runs
// busybox on layerlab's overlay2, btrfs and zfs through their serve
// processes; ctr snapshots ls/usage/rm work on btrfs; a size label is
// btrfs's quota; the driver's own store holds what containerd made; the
// CRI path kubelet speaks runs a pod on layerlab-overlay2 and its
// snapshots go; a serve killed with -9 during a run loop comes back and
// nothing is orphaned or left mounted.
func TestContainerdProxySnapshotters(t *testing.T) {
	e := newProxyEnv(t)
	c := e.c
	for _, name := range []string{"overlay2", "btrfs", "zfs"} {
		sn := "layerlab-" + name
		c.ctr(t, "images", "import", "--snapshotter", sn, e.archive)
		out := c.ctr(t, "run", "--rm", "--snapshotter", sn, busyboxRef, "e2e-"+name, "sh", "-c", "echo ran on $(awk '$2==\"/\"{print $3}' /proc/mounts)")
		if !strings.Contains(out, "ran on ") {
			t.Errorf("%s: ctr run said %q", name, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(out))
	}

	t.Run("btrfs snapshots ls usage rm and a size label", func(t *testing.T) {
		keys := c.keys(t, "default", "layerlab-btrfs")
		var chain string
		for k, kind := range keys {
			if kind == "Committed" && strings.HasPrefix(k, "sha256:") {
				chain = k
			}
		}
		if chain == "" {
			t.Fatalf("no committed layer in ctr snapshots ls: %v", keys)
		}
		c.ctr(t, "snapshots", "--snapshotter", "layerlab-btrfs", "prepare", "e2e-active", chain)
		if kind := c.keys(t, "default", "layerlab-btrfs")["e2e-active"]; kind != "Active" {
			t.Errorf("e2e-active is %q in ls, want Active", kind)
		}
		if out := c.ctr(t, "snapshots", "--snapshotter", "layerlab-btrfs", "usage", chain); !strings.Contains(out, chain) {
			t.Errorf("usage %s: %s", chain, out)
		}
		c.ctr(t, "snapshots", "--snapshotter", "layerlab-btrfs", "rm", "e2e-active")
		if _, ok := c.keys(t, "default", "layerlab-btrfs")["e2e-active"]; ok {
			t.Errorf("e2e-active still listed after rm")
		}
		// The size label reaches the driver as its quota: 48 MiB fit in
		// 64M, 96 MiB do not.
		label := containerd.LabelSize + "=64M"
		c.ctr(t, "run", "--rm", "--snapshotter", "layerlab-btrfs", "--snapshotter-label", label, busyboxRef, "e2e-fits", "sh", "-c", "dd if=/dev/zero of=/f bs=1M count=48 && sync")
		out, err := c.ctrTry("run", "--rm", "--snapshotter", "layerlab-btrfs", "--snapshotter-label", label, busyboxRef, "e2e-over", "sh", "-c", "dd if=/dev/zero of=/f bs=1M count=96 && sync")
		if err == nil || !strings.Contains(out, "quota exceeded") {
			t.Errorf("96 MiB under a 64M size label: %v %s", err, out)
		}
	})

	t.Run("store holds what containerd made", func(t *testing.T) {
		// Once containerd's GC has removed what the runs above left, stop
		// btrfs's serve and open its store in process: every snapshot
		// containerd lists is there, named NAMESPACE/ID/KEY, and nothing
		// else.
		s := e.serves["btrfs"]
		waitUntil(t, 20*time.Second, "containerd's GC done on btrfs", func() bool { return len(c.orphans(t, "layerlab-btrfs", "default")) == 0 })
		keys := c.keys(t, "default", "layerlab-btrfs")
		if err := s.stop(t); err != nil {
			t.Fatalf("serve btrfs on SIGTERM: %v", err)
		}
		d, err := builtin.Registry().Open(context.Background(), "btrfs", s.root, nil)
		if err != nil {
			t.Fatal(err)
		}
		held := map[string]drivers.Info{}
		if err := d.Walk(context.Background(), func(_ context.Context, i drivers.Info) error {
			held[i.Name] = i
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		for k := range keys {
			found := false
			for name, i := range held {
				if strings.HasPrefix(name, "default/") && strings.HasSuffix(name, "/"+k) {
					found = true
					if want := keys[k]; !strings.EqualFold(i.Kind.String(), want) {
						t.Errorf("%s is %s in layerlab's store, %s in containerd's", name, i.Kind, want)
					}
				}
			}
			if !found {
				t.Errorf("containerd's %s is not in layerlab's store %v", k, held)
			}
		}
		if len(held) != len(keys) {
			t.Errorf("layerlab's store holds %d snapshots, containerd lists %d: %v vs %v", len(held), len(keys), held, keys)
		}
		s.start(t)
		c.reconnected(t, "layerlab-btrfs")
		c.ctr(t, "run", "--rm", "--snapshotter", "layerlab-btrfs", busyboxRef, "e2e-again", "true")
	})

	t.Run("CRI pod on layerlab-overlay2", func(t *testing.T) { criPod(t, e) })

	t.Run("kill -9 of serve during a run loop", func(t *testing.T) {
		s := e.serves["overlay2"]
		// Runs go on one after another until three have passed after the
		// restart; serve is killed once two have passed.
		type result struct {
			n   int
			err error
		}
		results := make(chan result)
		stop := make(chan struct{})
		go func() {
			defer close(results)
			for n := 0; ; n++ {
				_, err := c.ctrTry("run", "--rm", "--snapshotter", "layerlab-overlay2", busyboxRef, fmt.Sprintf("loop-%d", n), "true")
				select {
				case results <- result{n, err}:
				case <-stop:
					return
				}
			}
		}()
		passed, failed, after := 0, 0, 0
		killed := false
		deadline := time.After(60 * time.Second)
		for after < 3 {
			var r result
			select {
			case r = <-results:
			case <-deadline:
				close(stop)
				t.Fatalf("runs after the restart: %d passed, %d failed in all; containerd did not recover in 60s", after, failed)
			}
			switch {
			case r.err != nil:
				failed++
			case killed:
				after++
			default:
				passed++
			}
			if passed == 2 && !killed {
				time.Sleep(20 * time.Millisecond) // into the third run
				s.kill()
				killed = true
				time.Sleep(200 * time.Millisecond)
				s.start(t)
			}
		}
		close(stop)
		for range results {
		}
		t.Logf("run loop: %d passed before the kill, %d failed around it, %d passed after the restart", passed, failed, after)
		if failed == 0 {
			t.Logf("no run failed: the kill fell between calls")
		}
		// Containers a failed `ctr run --rm` left are containerd's records;
		// remove them, then containerd's GC must leave no orphan.
		for _, line := range strings.Split(c.ctr(t, "containers", "ls", "-q"), "\n") {
			if id := strings.TrimSpace(line); id != "" {
				_, _ = c.ctrTry("tasks", "kill", "-s", "SIGKILL", id)
				_, _ = c.ctrTry("tasks", "rm", "-f", id)
				c.ctr(t, "containers", "rm", id)
			}
		}
		c.ctr(t, "run", "--rm", "--snapshotter", "layerlab-overlay2", busyboxRef, "after-cleanup", "true")
		waitUntil(t, 20*time.Second, "no orphaned snapshots after GC", func() bool {
			o := c.orphans(t, "layerlab-overlay2", "default", "k8s.io")
			if len(o) > 0 {
				t.Logf("orphans: %v", o)
			}
			return len(o) == 0
		})
	})

	// No container rootfs is mounted in containerd's namespace, and
	// nothing of the test's is mounted in the host's but its fixtures.
	if m := mountsUnder(t, c.cmd.Process.Pid, filepath.Join(c.dir, "state")); len(m) != 0 {
		t.Errorf("mounts left in containerd's namespace: %v", m)
	}
	for _, s := range e.serves {
		if m := mountsUnder(t, os.Getpid(), s.root); len(m) != 0 && s.name != "zfs" {
			t.Errorf("mounts left under %s: %v", s.root, m)
		}
	}
}
