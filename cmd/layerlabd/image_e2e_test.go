package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// TestEndToEndBenchImage builds the image of deploy/kubernetes' benchmark
// Jobs as `make image` does (scripts/image, no Docker daemon), loads the
// docker-archive into layerlabd with the docker CLI and runs it: layerlab
// answers --help and driver ls from the image, and every tool the drivers
// run (mkfs.ext4, mkfs.xfs, mkfs.btrfs, resize2fs, zfs-fuse, zfs, zpool)
// starts with the libraries the image carries, the mkfs tools making real
// filesystems on a file. Then, as the Job's privileged container would,
// a real bench (vfs, btrfs, zfs on loop filesystems) runs in the image.
func TestEndToEndBenchImage(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}

	const tag = "layerlab/bench:e2e"
	archive := filepath.Join(t.TempDir(), "image.tar")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "./scripts/image", "--tag", tag, "--version", "e2e", "--out", archive)
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image: %v\n%s", err, out)
	} else {
		t.Logf("%s", out)
	}

	c.expect(0, "Loaded image: "+tag, "load", "-i", archive)
	c.expect(0, `["/usr/local/bin/layerlab"] e2e`, "image", "inspect", "--format", `{{json .Config.Entrypoint}} {{index .Config.Labels "org.opencontainers.image.version"}}`, tag)
	help := c.expect(0, "Study container storage drivers", "run", "--rm", tag)
	for _, cmd := range []string{"bench", "driver", "report"} {
		if !strings.Contains(help, cmd) {
			t.Errorf("layerlab --help in the image lacks %s", cmd)
		}
	}

	ls := c.expect(0, "NAME", "run", "--rm", tag, "driver", "ls")
	// vfs works on the container's root; zfs finds its tools (the pool
	// daemon is not running, which is what it then says).
	if !regexp.MustCompile(`(?m)^vfs\s.*\syes\s*$`).MatchString(ls) {
		t.Errorf("vfs is not available in the image:\n%s", ls)
	}
	if zfs := regexp.MustCompile(`(?m)^zfs\s.*$`).FindString(ls); zfs == "" || strings.Contains(zfs, "not installed") {
		t.Errorf("zfs line %q: the image lacks the zfs tools", zfs)
	}

	script := `set -e
truncate -s 320M /tmp/img
mkfs.xfs -q -f /tmp/img; echo xfs made
mkfs.btrfs -q -f /tmp/img >/dev/null; echo btrfs made
mkfs.ext4 -q -F /tmp/img; echo ext4 made
resize2fs /tmp/img 200M >/dev/null 2>&1; echo ext4 resized
rm /tmp/img
zfs-fuse --help | head -1
zpool 2>&1 | grep -q zfs-fuse; echo zpool runs
zfs 2>&1 | grep -q zfs-fuse; echo zfs runs
echo x >/tmp/f; tar cf - -C /tmp f | tar tf - | grep -qx f; echo tar for kubectl cp`
	out := c.expect(0, "ext4 made", "run", "--rm", "--entrypoint", "/bin/sh", tag, "-c", script)
	for _, want := range []string{"ext4 resized", "xfs made", "btrfs made", "Usage: zfs-fuse", "zpool runs", "zfs runs", "tar for kubectl cp"} {
		if !strings.Contains(out, want) {
			t.Errorf("in the image: %q missing from:\n%s", want, out)
		}
	}
	c.expect(0, "", "rmi", tag)

	benchInImage(t, archive)
}

// benchInImage runs what a benchmark Job runs, in the image's root
// filesystem (unpacked with drivers/layer) the way the Job's privileged
// container sees it: the host's /dev, /proc, /sys, a scratch directory as
// TMPDIR and a results directory, in new mount, UTS and PID namespaces
// (the PID namespace takes zfs-fuse down with it, whatever happens).
// The bench makes its loop filesystems, mkfs's them and starts zfs-fuse
// with the image's tools only.
func benchInImage(t *testing.T, archive string) {
	t.Helper()
	if err := loopfs.CheckZFS(); err != nil {
		feature.Skip(t, feature.ZFS, "%v", err)
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("image layers %d: %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rootfs, scratch, results := t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := layer.Apply(context.Background(), rootfs, rc, layer.AllowAbsoluteSymlinks(true)); err != nil {
		t.Fatalf("unpack the image: %v", err)
	}
	job := `set -e
R=$0
hostname node-x
mount --rbind /dev "$R/dev"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --bind "$1" "$R/scratch"
mount --bind "$2" "$R/results"
TMPDIR=/scratch exec chroot "$R" /usr/local/bin/layerlab bench --profile quick --driver vfs --driver btrfs --driver zfs --workloads snapshot-ops --n 2 --out /results/node-x`
	cmd := exec.Command("unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private", "sh", "-c", job, rootfs, scratch, results)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("layerlab bench in the image: %v\n%s", err, out)
	}
	t.Logf("layerlab bench in the image:\n%s", out)
	r, err := result.Load(filepath.Join(results, "node-x", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tg := range r.Targets {
		ids = append(ids, tg.ID)
	}
	if r.Machines[0].Hostname != "node-x" || !slices.Contains(ids, "btrfs/btrfs") || !slices.Contains(ids, "vfs/xfs") ||
		!slices.Contains(ids, "zfs/fuse.zfs") || len(r.Series) == 0 || len(r.Notes) > 1 {
		t.Errorf("bench in the image: host %s, targets %v, %d series, notes %q", r.Machines[0].Hostname, ids, len(r.Series), r.Notes)
	}
	if left, _ := os.ReadDir(scratch); len(left) > 0 {
		t.Errorf("the bench left %d entries in its scratch directory", len(left))
	}
}
