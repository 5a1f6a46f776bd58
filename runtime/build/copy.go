package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/sys/user"
	"github.com/ulikunitz/xz"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
)

// copySpec is a COPY or ADD.
type copySpec struct {
	instructions.SourcesAndDest
	from, chown, chmod string
	link, parents      bool
	exclude            []string
	add                bool
	text               string
}

// source is one file or directory a COPY takes, found under its root.
type source struct {
	path    string // absolute, symlinks resolved inside the root
	rel     string // as matched, relative to the root
	archive bool   // ADD of a local archive: extracted, not copied
}

func (c copySpec) what() string {
	if c.add {
		return "ADD"
	}
	return "COPY"
}

// copyStep runs a COPY or ADD: the sources (from the context, or an
// earlier stage or image with --from) are staged as a tar with the
// ownership asked, applied in a container of the current image under the
// destination, and committed.
func (s *session) copyStep(ctx context.Context, st *stage, c copySpec) error {
	switch {
	case c.chmod != "", c.link, c.parents, len(c.exclude) > 0:
		return fmt.Errorf("%s: --chmod, --link, --parents and --exclude need BuildKit, which layerlabd does not run: %w", c.text, drivers.ErrNotImplemented)
	case len(c.SourceContents) > 0:
		return fmt.Errorf("%s: heredocs need BuildKit, which layerlabd does not run: %w", c.text, drivers.ErrNotImplemented)
	case len(c.SourcePaths) == 0:
		return fmt.Errorf("%s: no source: %w", c.text, drivers.ErrInvalidArgument)
	}
	for _, p := range c.SourcePaths {
		if isURL(p) {
			if c.add {
				return fmt.Errorf("%s: ADD of the URL %s is not supported: layerlabd's builder has no network access; download the file into the build context and ADD it from there: %w", c.text, p, drivers.ErrNotImplemented)
			}
			return fmt.Errorf("%s: source can't be a URL for COPY (%s): %w", c.text, p, drivers.ErrInvalidArgument)
		}
	}
	var stagedTar, hash string
	var srcs []source
	stage := func(root string, keepOwner bool) error {
		var err error
		if srcs, err = resolve(root, c.SourcePaths, c.add); err != nil {
			return fmt.Errorf("%s failed: %w", c.what(), err)
		}
		if len(srcs) > 1 && !strings.HasSuffix(c.DestPath, "/") {
			return fmt.Errorf("%s: when using %s with more than one source file, the destination must be a directory and end with a /: %w", c.text, c.what(), drivers.ErrInvalidArgument)
		}
		stagedTar, hash, err = s.stageTar(srcs, keepOwner)
		return err
	}
	if c.from != "" {
		from, err := s.b.Image(ctx, c.from)
		if i, ok := s.stageIndex(c.from); ok {
			from, err = s.b.Image(ctx, s.stages[i])
		}
		if err != nil {
			return fmt.Errorf("%s: --from=%s names no earlier stage and no local image: %w", c.text, c.from, err)
		}
		cid, err := s.b.CreateContainer(ctx, from.ID, &container.Config{Image: from.ID, Entrypoint: []string{"/"}}, s.o.Driver)
		if err != nil {
			return err
		}
		err = s.b.WithRootfs(ctx, cid, func(root string) error { return stage(root, true) })
		if err := errors.Join(err, s.b.RemoveContainer(context.WithoutCancel(ctx), cid)); err != nil {
			return err
		}
	} else if err := stage(s.ctx.root, false); err != nil {
		return err
	}
	defer os.Remove(stagedTar)
	dest := c.DestPath
	if !path.IsAbs(dest) {
		dest = path.Join("/", st.cfg.WorkingDir, dest)
		if strings.HasSuffix(c.DestPath, "/") || c.DestPath == "." {
			dest += "/"
		}
	}
	kind := "multi"
	if len(srcs) == 1 {
		kind = "file"
		if fi, err := os.Stat(srcs[0].path); err == nil && fi.IsDir() {
			kind = "dir"
		}
	}
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in %s ", c.what(), kind, strings.TrimPrefix(hash, "sha256:"), dest)
	key := cacheKey("copy", c.text, hash, dest, c.chown, c.from, st.cfg.WorkingDir)
	if s.cached(ctx, st, key) {
		return nil
	}
	return s.writeStep(ctx, st, createdBy, key, func(root string) error {
		return s.apply(ctx, root, c, srcs, stagedTar, dest)
	})
}

// writeStep runs fn on the rootfs of a (never started) container of the
// stage's image and commits what fn wrote as the step's layer.
func (s *session) writeStep(ctx context.Context, st *stage, createdBy, key string, fn func(root string) error) error {
	if err := s.ensureBase(ctx, st); err != nil {
		return err
	}
	cid, err := s.b.CreateContainer(ctx, st.img, &container.Config{Image: st.img, Entrypoint: []string{"/"}}, s.o.Driver)
	if err != nil {
		return err
	}
	err = s.b.WithRootfs(ctx, cid, fn)
	return s.commitContainer(ctx, st, cid, createdBy, key, err)
}

// workdirStep makes the stage's working directory in its image (owned by
// root, 0755), as dockerd's classic builder does: in a container,
// committed, so a directory that was there already gives an empty layer.
func (s *session) workdirStep(ctx context.Context, st *stage, createdBy string) error {
	cfgJSON, err := json.Marshal(st.cfg)
	if err != nil {
		return err
	}
	key := cacheKey("workdir", createdBy, st.author, string(cfgJSON))
	if s.cached(ctx, st, key) {
		return nil
	}
	return s.writeStep(ctx, st, createdBy, key, func(root string) error {
		dir, err := securejoin.SecureJoin(root, st.cfg.WorkingDir)
		if err != nil {
			return fmt.Errorf("WORKDIR %s: %w: %w", st.cfg.WorkingDir, err, drivers.ErrInvalidArgument)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EEXIST) {
				// Something of the image's that is no directory is in the way.
				return fmt.Errorf("WORKDIR %s: %w: %w", st.cfg.WorkingDir, err, drivers.ErrInvalidArgument)
			}
			return fmt.Errorf("WORKDIR %s: %w", st.cfg.WorkingDir, err)
		}
		return nil
	})
}

func isURL(p string) bool {
	l := strings.ToLower(p)
	return strings.HasPrefix(l, "http://") || strings.HasPrefix(l, "https://") || strings.HasPrefix(l, "git@")
}

// resolve finds the sources under root: each pattern cleaned (a climb out
// of the root is refused), wildcards matched against every path, symlinks
// followed only inside root.
func resolve(root string, patterns []string, add bool) ([]source, error) {
	var out []source
	for _, p := range patterns {
		rel, err := contextPath(p)
		if err != nil {
			return nil, err
		}
		if !strings.ContainsAny(rel, "*?[") {
			abs, err := securejoin.SecureJoin(root, rel)
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(abs); err != nil {
				return nil, fmt.Errorf("file not found in build context or excluded by .dockerignore: stat %s: file does not exist: %w", p, drivers.ErrNotFound)
			}
			out = append(out, source{path: abs, rel: rel})
			continue
		}
		if _, err := path.Match(rel, ""); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w: %w", p, err, drivers.ErrInvalidArgument)
		}
		n := len(out)
		err = filepath.WalkDir(root, func(abs string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			r, _ := filepath.Rel(root, abs)
			if ok, _ := path.Match(rel, filepath.ToSlash(r)); ok && r != "." {
				real, err := securejoin.SecureJoin(root, r)
				if err != nil {
					return err
				}
				if _, err := os.Stat(real); err == nil {
					out = append(out, source{path: real, rel: r})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(out) == n {
			return nil, fmt.Errorf("no source files were specified: %s matches nothing in the build context: %w", p, drivers.ErrNotFound)
		}
	}
	if add {
		for i := range out {
			out[i].archive = isArchive(out[i].path)
		}
	}
	return out, nil
}

// isArchive says whether an ADD source is a tar (plain, gzip, bzip2, xz
// or zstd), which ADD extracts.
func isArchive(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	r, err := decompress(f)
	if err != nil {
		return false
	}
	_, err = tar.NewReader(r).Next()
	return err == nil
}

// decompress opens what ADD extracts (gzip, bzip2, xz, zstd), telling
// them by their magic numbers; anything else is read as it is.
func decompress(f io.Reader) (io.Reader, error) {
	br := bufio.NewReader(f)
	magic, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return xz.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		// One goroutine: none to close. A window above zstd's --long=27
		// (128 MiB) is refused rather than allocated.
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return br, nil
}

// stageTar writes the sources (not the archives ADD extracts) as one tar
// under dir, named as they land below the destination, and hashes what
// the cache compares: names, modes, owners, link targets and content
// (not times). keepOwner keeps the source's owner (--from); a context's
// files belong to root, as in dockerd.
func (s *session) stageTar(srcs []source, keepOwner bool) (string, string, error) {
	f, err := os.CreateTemp(s.tmp, "copy-*.tar")
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	h := sha256.New()
	for _, src := range srcs {
		fi, err := os.Stat(src.path)
		if err != nil {
			return f.Name(), "", err
		}
		if src.archive {
			fmt.Fprintf(h, "archive:%s\x00", src.rel)
			if err := hashFile(h, src.path); err != nil {
				return f.Name(), "", err
			}
			continue
		}
		if !fi.IsDir() {
			// A file copied to a file path is renamed at apply time.
			if err := addEntry(tw, h, src.path, path.Base(filepath.ToSlash(src.rel)), fi, keepOwner); err != nil {
				return f.Name(), "", err
			}
			continue
		}
		err = filepath.WalkDir(src.path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src.path, p)
			if rel == "." {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return addEntry(tw, h, p, filepath.ToSlash(rel), info, keepOwner)
		})
		if err != nil {
			return f.Name(), "", err
		}
	}
	if err := tw.Close(); err != nil {
		return f.Name(), "", err
	}
	return f.Name(), "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(h io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// addEntry writes one file, directory or symlink; anything else (a
// device, a socket) is refused.
func addEntry(tw *tar.Writer, h io.Writer, p, name string, fi fs.FileInfo, keepOwner bool) error {
	link := ""
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		var err error
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	case fi.Mode().IsRegular(), fi.IsDir():
	default:
		return fmt.Errorf("%s: only files, directories and symlinks can be copied (it is %s): %w", name, fi.Mode().Type(), drivers.ErrInvalidArgument)
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
	if fi.IsDir() {
		hdr.Name += "/"
	}
	if !keepOwner {
		hdr.Uid, hdr.Gid = 0, 0
	}
	hdr.Format = tar.FormatPAX
	fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00%s\x00%d\x00", hdr.Name, hdr.Mode, hdr.Uid, hdr.Gid, hdr.Linkname, hdr.Size)
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.MultiWriter(tw, h), f)
	return err
}

// apply lands the staged sources in the container's rootfs: the tar (its
// owners set by --chown) and each archive ADD extracts, both through
// layer.Apply, which resolves the rootfs's symlinks inside it and never
// writes through one.
func (s *session) apply(ctx context.Context, root string, c copySpec, srcs []source, staged, dest string) error {
	dirDest := strings.HasSuffix(dest, "/") || len(srcs) > 1
	target := path.Clean(dest)
	if !dirDest {
		if abs, err := securejoin.SecureJoin(root, target); err == nil {
			if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
				dirDest = true
			}
		}
		for _, src := range srcs {
			if fi, err := os.Stat(src.path); err == nil && fi.IsDir() || src.archive {
				dirDest = true
			}
		}
	}
	dir, base := target, ""
	if !dirDest {
		dir, base = path.Dir(target), path.Base(target)
	}
	abs, err := securejoin.SecureJoin(root, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return fmt.Errorf("%s: destination %s: %w", c.text, dir, err)
	}
	uid, gid := -1, -1
	if c.chown != "" {
		passwd, _ := securejoin.SecureJoin(root, "etc/passwd")
		group, _ := securejoin.SecureJoin(root, "etc/group")
		u, err := user.GetExecUserPath(c.chown, &user.ExecUser{}, passwd, group)
		if err != nil {
			return fmt.Errorf("%s: --chown=%s: %w: %w", c.text, c.chown, err, drivers.ErrInvalidArgument)
		}
		uid, gid = u.Uid, u.Gid
	}
	final, err := s.retag(staged, base, uid, gid)
	if err != nil {
		return err
	}
	defer os.Remove(final)
	if err := applyFile(ctx, abs, final, s.tmp); err != nil {
		return fmt.Errorf("%s: %w", c.text, err)
	}
	for _, src := range srcs {
		if src.archive {
			if err := applyFile(ctx, abs, src.path, s.tmp); err != nil {
				return fmt.Errorf("%s: extracting %s: %w", c.text, src.rel, err)
			}
		}
	}
	return nil
}

// retag rewrites the staged tar with the destination's file name and the
// --chown owner (-1: keep).
func (s *session) retag(staged, base string, uid, gid int) (string, error) {
	in, err := os.Open(staged)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.CreateTemp(s.tmp, "apply-*.tar")
	if err != nil {
		return "", err
	}
	defer out.Close()
	tr, tw := tar.NewReader(in), tar.NewWriter(out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out.Name(), err
		}
		if base != "" { // the one file of a COPY to a file path
			h.Name = base
		}
		if uid >= 0 {
			h.Uid, h.Gid = uid, gid
		}
		if err := tw.WriteHeader(h); err != nil {
			return out.Name(), err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return out.Name(), err
		}
	}
	return out.Name(), tw.Close()
}

// applyFile applies the tar (plain or compressed as ADD extracts: gzip,
// bzip2, xz, zstd) at p under dir as a plain untar does: ".wh." names are
// files, not deletions (LiteralNames), as in dockerd's classic builder.
func applyFile(ctx context.Context, dir, p, tmp string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	_, err = layer.Apply(ctx, dir, r, layer.WithTempDir(tmp), layer.LiteralNames())
	return err
}
