// Command image builds the container image `make image` writes: a
// docker-archive (loadable with `docker load` and `ctr images import`)
// holding a static layerlab binary and the tools its drivers shell out to,
// for the benchmark Jobs in deploy/kubernetes. It needs no Docker daemon:
// go-containerregistry assembles the image from one layer this program
// writes.
//
// The tools (mkfs.ext4, mkfs.xfs, mkfs.btrfs, resize2fs, zfs-fuse, zfs,
// zpool, and the umount zfs-fuse runs) are taken from the host, where
// make setup installed them from Debian, with the shared libraries ldd
// says they load, at the same paths. That is far smaller (about 17 MB of
// tools and libraries; 40 MB unpacked with layerlab, 20 MB compressed)
// than a Debian minbase with the packages installed into it, and needs no
// network. busybox
// (static) adds the sh and tar that `kubectl cp` and `kubectl exec` need.
//
// usage: go run ./scripts/image --tag REF --out FILE [--version V --commit C]
package main

import (
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tools are the programs the drivers and loop filesystems run (see
// drivers/loopfs and drivers/zfs), by the name they are run with, and
// umount, which zfs-fuse forks to unmount a dataset.
var tools = []string{"mkfs.ext4", "resize2fs", "mkfs.xfs", "mkfs.btrfs", "zfs-fuse", "zfs", "zpool", "umount"}

// dlopened are libraries loaded with dlopen, which ldd cannot see.
var dlopened = []string{"libgcc_s.so.1"}

// configs are files the tools read when present; mke2fs falls back to
// built-in defaults without its file, but the host's gives the same
// filesystems the tests make.
var configs = []string{"/etc/mke2fs.conf", "/etc/zfs/zfsrc"}

// busyboxApplets are linked to busybox: sh and tar for kubectl exec and
// kubectl cp, sleep for the results collector, the rest for looking
// around a node's results by hand.
var busyboxApplets = []string{"sh", "tar", "test", "sleep", "ls", "cat", "truncate", "rm", "mkdir"}

// epoch is every file's and the image's timestamp, so the same inputs
// give the same image digest.
var epoch = time.Unix(0, 0).UTC()

func main() {
	var (
		tag, out, version, commit, binary string
	)
	flag.StringVar(&tag, "tag", "", "image reference to write into the archive (make image: $(IMAGE))")
	flag.StringVar(&out, "out", "", "docker-archive to write")
	flag.StringVar(&version, "version", "dev", "layerlab version (-X main.version)")
	flag.StringVar(&commit, "commit", "unknown", "layerlab commit (-X main.commit)")
	flag.StringVar(&binary, "binary", "", "use this static layerlab binary instead of building one")
	flag.Parse()
	if tag == "" || out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: go run ./scripts/image --tag REF --out FILE [--version V] [--commit C] [--binary FILE]")
		os.Exit(2)
	}
	if err := run(tag, out, version, commit, binary); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(tag, out, version, commit, binary string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("--tag %q: %w", tag, err)
	}
	work, err := os.MkdirTemp("", "layerlab-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if binary == "" {
		binary = filepath.Join(work, "layerlab")
		if err := buildStatic(binary, version, commit); err != nil {
			return err
		}
	}
	if err := checkStatic(binary); err != nil {
		return err
	}
	layerPath := filepath.Join(work, "layer.tar")
	if err := writeRootfs(layerPath, binary); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(layerPath)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = runtime.GOARCH, "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{"/usr/local/bin/layerlab"}
	cf.Config.Cmd = []string{"--help"}
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=/tmp"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "layerlab",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": commit,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	// Written next to out and renamed, so a failed build never leaves a
	// truncated archive that docker load would half-read.
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	digest, _ := img.Digest()
	fi, _ := os.Stat(out)
	fmt.Printf("image %s (%s, %.1f MB) written to %s\n", ref, digest, float64(fi.Size())/1e6, out)
	return nil
}

// buildStatic builds layerlab as one static executable: it needs cgo
// (libcontainer's nsenter for the lifecycle workload, libseccomp for the
// seccomp tag), so it is linked statically against glibc and libseccomp.a;
// netgo and osusergo keep glibc's NSS (which a static binary cannot load)
// out of it.
func buildStatic(bin, version, commit string) error {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	ldflags := fmt.Sprintf(`-s -w -linkmode external -extldflags "-static" -X main.version=%s -X main.commit=%s`, version, commit)
	cmd := exec.Command(gobin, "build", "-tags", "seccomp,netgo,osusergo", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/layerlab")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build of a static layerlab (run from the repository root; needs libseccomp-dev, which make setup installs): %w\n%s", err, out)
	}
	return nil
}

// checkStatic refuses a binary that needs a dynamic loader: the image
// carries only the tools' libraries, not layerlab's.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New(bin + " is dynamically linked; give a static layerlab (or none, to build one)")
		}
	}
	return nil
}
