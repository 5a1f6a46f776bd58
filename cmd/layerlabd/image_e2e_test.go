package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestEndToEndBenchImage builds the image of deploy/kubernetes' benchmark
// Jobs as `make image` does (scripts/image, no Docker daemon), loads the
// docker-archive into layerlabd with the docker CLI and runs it: layerlab
// answers --help and driver ls from the image, and every tool the drivers
// run (mkfs.ext4, mkfs.xfs, mkfs.btrfs, resize2fs, zfs-fuse, zfs, zpool)
// starts with the libraries the image carries, the mkfs tools making real
// filesystems on a file. It is not privileged, so no bench runs inside.
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
}
