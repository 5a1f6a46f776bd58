package layer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/layer"
)

// The real-image test: a busybox image (from busybox-static) and a Debian
// minbase image (debootstrap, scripts/images/debian-minbase.sh), each two
// layers made by Diff and full of absolute symlinks, saved as a
// docker-archive and read back, are applied with their DiffIDs on every
// host driver; Diff of the committed snapshots must give the same DiffIDs.

// image is a built image: its docker-archive on disk.
type image struct {
	name    string
	archive string
}

// busyboxRoot builds a busybox root filesystem: the static binary and a
// symlink per applet to /bin/busybox (absolute, as busybox --install
// makes them).
func busyboxRoot(t *testing.T) string {
	bin := "/bin/busybox"
	if _, err := os.Stat(bin); err != nil {
		feature.Skip(t, feature.Busybox, "%s: %v (make setup installs busybox-static)", bin, err)
	}
	out, err := command.Run(context.Background(), bin, "--list-full")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "busybox")
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "root", "tmp", "var", "run", "home"} {
		mustDo(t, os.MkdirAll(filepath.Join(root, d), 0o755))
	}
	mustDo(t, os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky))
	data, err := os.ReadFile(bin)
	mustDo(t, err)
	mustDo(t, os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755))
	for _, applet := range strings.Fields(string(out)) {
		if applet == "bin/busybox" {
			continue
		}
		mustDo(t, os.MkdirAll(filepath.Join(root, filepath.Dir(applet)), 0o755))
		mustDo(t, os.Symlink("/bin/busybox", filepath.Join(root, applet)))
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
		"etc/group":    "root:x:0:\nnogroup:x:65534:\n",
		"etc/hostname": "busybox\n",
	}
	for p, body := range files {
		mustDo(t, os.WriteFile(filepath.Join(root, p), []byte(body), 0o644))
	}
	mustDo(t, os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(root, "etc/localtime")))
	mustDo(t, os.Symlink("../run", filepath.Join(root, "var/run")))
	return root
}

// debianRoot returns the Debian minbase root filesystem make setup built
// with debootstrap (scripts/images); the test itself never fetches.
func debianRoot(t *testing.T) string {
	script, err := filepath.Abs("../../scripts/images/debian-minbase.sh")
	mustDo(t, err)
	out, err := command.Run(context.Background(), "bash", script, "--cached")
	if err != nil {
		feature.Skip(t, feature.Debian, "Debian minbase image: %v (make setup builds it)", err)
	}
	return strings.TrimSpace(string(out))
}

// buildImage makes a two-layer image of root: the whole tree, then a
// layer of changes made on a hardlinked copy (files removed, replaced and
// added, an absolute symlink, a new directory), both written by Diff.
func buildImage(t *testing.T, name, root string) image {
	ctx := context.Background()
	// The copy must share root's filesystem to hardlink; it goes next to it.
	scratch, err := os.MkdirTemp(filepath.Dir(root), ".layerlab-image-")
	mustDo(t, err)
	t.Cleanup(func() { os.RemoveAll(scratch) })

	var l1 bytes.Buffer
	d1, err := layer.Diff(ctx, &l1, "", root)
	mustDo(t, err)
	upper := filepath.Join(scratch, "upper")
	mustDo(t, linkCopy(root, upper))
	if err := os.Remove(filepath.Join(upper, "etc/hostname")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	mustDo(t, os.Remove(filepath.Join(upper, "etc/passwd")))
	mustDo(t, os.WriteFile(filepath.Join(upper, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644))
	mustDo(t, os.MkdirAll(filepath.Join(upper, "opt/app/data"), 0o755))
	mustDo(t, os.WriteFile(filepath.Join(upper, "opt/app/data/config"), bytes.Repeat([]byte("layerlab "), 1000), 0o600))
	mustDo(t, os.Symlink("/bin/sh", filepath.Join(upper, "opt/app/shell")))
	mustDo(t, os.Symlink("../../etc/passwd", filepath.Join(upper, "opt/app/passwd")))
	var l2 bytes.Buffer
	d2, err := layer.Diff(ctx, &l2, root, upper)
	mustDo(t, err)
	if d1.DiffID != digest.FromBytes(l1.Bytes()) || d2.Digest != d2.DiffID || d2.Size != int64(l2.Len()) {
		t.Fatalf("Diff's digests do not describe what it wrote: %+v %+v", d1, d2)
	}
	arch := filepath.Join(t.TempDir(), name+".tar")
	mustDo(t, writeArchive(arch, name, [][]byte{l1.Bytes(), l2.Bytes()}))
	return image{name: name, archive: arch}
}

// linkCopy copies the tree src to dst with every non-directory hardlinked
// and every directory made anew with src's owner, mode and times.
func linkCopy(src, dst string) error {
	type dirTimes struct {
		path string
		ts   []unix.Timespec
	}
	var dirs []dirTimes
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if !d.IsDir() {
			return unix.Linkat(unix.AT_FDCWD, p, unix.AT_FDCWD, target, 0)
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if err := os.Mkdir(target, 0o700); err != nil {
			return err
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Chmod(target, st.Mode&0o7777); err != nil {
			return err
		}
		dirs = append(dirs, dirTimes{target, []unix.Timespec{st.Atim, st.Mtim}})
		return nil
	})
	for i := len(dirs) - 1; err == nil && i >= 0; i-- {
		err = unix.UtimesNano(dirs[i].path, dirs[i].ts)
	}
	return err
}

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	RootFS       struct {
		Type    string          `json:"type"`
		DiffIDs []digest.Digest `json:"diff_ids"`
	} `json:"rootfs"`
}

// writeArchive writes layers as a docker-archive (docker save's format).
func writeArchive(path, name string, layers [][]byte) error {
	var cfg imageConfig
	cfg.Architecture, cfg.OS, cfg.RootFS.Type = "amd64", "linux", "layers"
	m := dockerManifest{RepoTags: []string{"layerlab/" + name + ":test"}}
	files := map[string][]byte{}
	var order []string
	for _, l := range layers {
		id := digest.FromBytes(l)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, id)
		p := id.Encoded() + "/layer.tar"
		m.Layers = append(m.Layers, p)
		files[p] = l
		order = append(order, p)
	}
	c, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	m.Config = digest.FromBytes(c).Encoded() + ".json"
	mj, err := json.Marshal([]dockerManifest{m})
	if err != nil {
		return err
	}
	files[m.Config], files["manifest.json"] = c, mj
	order = append(order, m.Config, "manifest.json")

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range order {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(files[p]); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// readArchive reads a docker-archive back: the layer files, extracted
// into dir, and the DiffIDs its config lists.
func readArchive(path, dir string) ([]string, []digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	small := map[string][]byte{}
	extracted := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if strings.HasSuffix(hdr.Name, ".tar") {
			p := filepath.Join(dir, strings.ReplaceAll(hdr.Name, "/", "_"))
			out, err := os.Create(p)
			if err != nil {
				return nil, nil, err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, nil, err
			}
			extracted[hdr.Name] = p
			continue
		}
		if small[hdr.Name], err = io.ReadAll(tr); err != nil {
			return nil, nil, err
		}
	}
	var ms []dockerManifest
	if err := json.Unmarshal(small["manifest.json"], &ms); err != nil || len(ms) != 1 {
		return nil, nil, fmt.Errorf("manifest.json: %v (%d images)", err, len(ms))
	}
	var cfg imageConfig
	if err := json.Unmarshal(small[ms[0].Config], &cfg); err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", ms[0].Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(ms[0].Layers) {
		return nil, nil, fmt.Errorf("%d layers but %d diff_ids", len(ms[0].Layers), len(cfg.RootFS.DiffIDs))
	}
	var layers []string
	for _, l := range ms[0].Layers {
		p, ok := extracted[l]
		if !ok {
			return nil, nil, fmt.Errorf("layer %s is not in the archive", l)
		}
		layers = append(layers, p)
	}
	return layers, cfg.RootFS.DiffIDs, nil
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
