package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	continuityfs "github.com/containerd/continuity/fs"
	"golang.org/x/sys/unix"
)

// applier is the second pass: it writes a layer the first pass accepted.
// Whatever it finds different from what the first pass saw is an error;
// touched says whether it had written anything by then.
type applier struct {
	ctx     context.Context
	root    string
	o       options
	s       scanned
	st      Stats
	touched bool
	root0   bool                 // running as root: ownership is applied
	dirs    map[string]string    // tar directory -> host path, while nothing is removed
	times   map[string]time.Time // directories whose times are set last
	made    map[string]bool      // host paths this layer wrote (only with opaque markers)
	rootfd  *rootFD              // where files are created
	buf     []byte
	pool    *pool // writes independent regular files; nil when the layer is not in a file
}

func newApplier(ctx context.Context, root string, o options, s scanned) *applier {
	a := &applier{
		ctx: ctx, root: filepath.Clean(root), o: o, s: s, root0: os.Geteuid() == 0,
		dirs: map[string]string{}, times: map[string]time.Time{}, buf: make([]byte, 128<<10),
	}
	if s.opaque {
		a.made = map[string]bool{}
	}
	return a
}

func (a *applier) apply(r io.Reader) error {
	var in io.Reader = bufio.NewReaderSize(r, 1<<20) // a read per header otherwise
	var pr *posReader
	if f, ok := r.(*os.File); ok && !a.s.opaque {
		if p, err := newPosReader(f); err == nil {
			in, pr = p, p
			a.pool = newPool(a, f)
			defer a.pool.stop()
		}
	}
	tr := tar.NewReader(in)
	for i := 0; ; i++ {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if i != len(a.s.prints) {
				return invalid("the layer changed between the passes: %d entries, then %d (was the input rewritten during Apply?)", len(a.s.prints), i)
			}
			break
		}
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return notTar(err, 0)
		}
		if i >= len(a.s.prints) || fingerprint(hdr) != a.s.prints[i] {
			return invalid("layer entry %q changed between the passes (was the input rewritten during Apply?)", hdr.Name)
		}
		job := fileJob{hdr: hdr}
		if pr != nil && a.s.solo[i] {
			job.off = pr.pos
		} else {
			job.hdr = nil
		}
		if err := a.entry(hdr, tr, job); err != nil {
			return err
		}
	}
	if a.pool != nil {
		if err := a.pool.barrier(); err != nil {
			return err
		}
	}
	// Directory times last: writing into a directory changes its mtime.
	for p, mtime := range a.times {
		if err := a.chtimes(p, mtime); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	return nil
}

// parent returns the host path of the tar directory dir, resolving the
// snapshot's symlinks inside the root, and whether it exists.
func (a *applier) parent(dir string) (string, bool, error) {
	if dir == "." {
		return a.root, true, nil
	}
	if p, ok := a.dirs[dir]; ok {
		return p, true, nil
	}
	p, err := continuityfs.RootPath(a.root, dir)
	if err != nil {
		return "", false, err
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return p, false, nil
	case err != nil:
		return "", false, err
	case !fi.IsDir():
		return "", false, fmt.Errorf("%s is not a directory", p)
	}
	a.dirs[dir] = p
	return p, true, nil
}

// entry applies hdr; job.hdr is set when the pool may write it.
func (a *applier) entry(hdr *tar.Header, tr *tar.Reader, job fileJob) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if a.pool != nil && job.hdr == nil && hdr.Typeflag != tar.TypeDir {
		// In tar order after everything queued before it.
		if err := a.pool.barrier(); err != nil {
			return err
		}
	}
	clean := path.Clean(hdr.Name)
	if clean == "." {
		a.st.Entries++
		return nil // the root stays as the snapshot made it
	}
	dir, base := path.Dir(clean), path.Base(clean)
	parent, ok, err := a.parent(dir)
	if err != nil {
		return err
	}
	if a.o.whiteout(base) {
		a.st.Entries++
		a.st.Whiteouts++
		if !ok {
			return nil // nothing to delete; the first pass saw the same
		}
		return a.whiteout(parent, base)
	}
	if !ok {
		if err := a.mkdirs(parent); err != nil {
			return err
		}
		a.dirs[dir] = parent
	}
	p := filepath.Join(parent, base)
	if job.hdr != nil {
		a.touched = true
		a.st.Bytes += hdr.Size
		job.p = p
		if err := a.pool.add(job); err != nil {
			return err
		}
	} else if err := a.write(p, hdr, tr); err != nil {
		return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
	}
	a.st.Entries++
	if a.made != nil {
		a.made[p] = true
	}
	return nil
}

// mkdirs makes the missing directories of p (mode 0755, as containerd and
// Docker make the parents a layer does not list) and, when the layer has
// opaque markers, records them as this layer's.
func (a *applier) mkdirs(p string) error {
	var missing []string
	for q := p; q != a.root; q = filepath.Dir(q) {
		if _, err := os.Lstat(q); err == nil {
			break
		}
		missing = append(missing, q)
	}
	a.touched = true
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	if a.made != nil {
		for _, q := range missing {
			a.made[q] = true
		}
	}
	return nil
}

func (a *applier) whiteout(parent, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(parent)
	}
	p := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
	return a.remove(p)
}

// opaque removes what lower layers put in dir, keeping what this layer
// wrote there (in any order relative to the marker).
func (a *applier) opaque(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		if !a.made[p] {
			if err := a.remove(p); err != nil {
				return err
			}
		} else if de.IsDir() {
			if err := a.opaque(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove deletes p, whatever it is, and forgets what was cached about it.
func (a *applier) remove(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	a.touched = true
	if fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
		a.dirs = map[string]string{}
		for q := range a.times {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(a.times, q)
			}
		}
	}
	if fi.IsDir() {
		return os.RemoveAll(p)
	}
	return os.Remove(p)
}

// write puts the entry hdr at p, replacing what is there unless both are
// directories (then only the metadata changes).
func (a *applier) write(p string, hdr *tar.Header, tr *tar.Reader) error {
	mode := uint32(hdr.Mode & 0o7777)
	if hdr.Typeflag == tar.TypeDir {
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() {
			if err := a.remove(p); err != nil {
				return err
			}
			a.touched = true
			if err := unix.Mkdir(p, 0o700); err != nil {
				return err
			}
		}
		a.touched = true
		if err := a.meta(p, hdr, mode, true); err != nil {
			return err
		}
		a.times[p] = hdr.ModTime
		return nil
	}
	if isRegular(hdr) {
		return a.file(p, hdr, tr, mode)
	}
	if err := a.remove(p); err != nil {
		return err
	}
	a.touched = true
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, p); err != nil {
			return err
		}
		return a.meta(p, hdr, 0, false)
	case tar.TypeLink:
		target, err := a.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		// The inode keeps its own metadata, as tar -x and the kernel do.
		return unix.Linkat(unix.AT_FDCWD, target, unix.AT_FDCWD, p, 0)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		if err := unix.Mknod(p, kind|0o600, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
		return a.meta(p, hdr, mode, true)
	}
	return fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
}

// linkTarget is the host path of a hardlink target: its directory resolved
// inside the root, its own name not followed (a link to a symlink links
// the symlink).
func (a *applier) linkTarget(name string) (string, error) {
	clean := path.Clean(name)
	dir, ok, err := a.parent(path.Dir(clean))
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("hardlink target %q: %w", name, os.ErrNotExist)
	}
	return filepath.Join(dir, path.Base(clean)), nil
}

// file writes a regular file. It is created exclusively, so a symlink or
// anything else at p is removed first, never written through.
func (a *applier) file(p string, hdr *tar.Header, tr *tar.Reader, mode uint32) error {
	a.touched = true
	fd, err := a.rootfd.createExcl(p)
	if errors.Is(err, unix.EEXIST) {
		if err := a.remove(p); err != nil {
			return err
		}
		fd, err = a.rootfd.createExcl(p)
	}
	if err != nil {
		return err
	}
	n, err := a.content(fd, tr, isSparse(hdr))
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("wrote %d of %d bytes", n, hdr.Size)
	}
	if err == nil {
		err = a.fmeta(fd, p, hdr, mode)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	a.st.Bytes += n
	return err
}

// content copies the entry's data to f. For a sparse entry, blocks of
// zeros are skipped instead of written, so holes stay holes.
func (a *applier) content(fd int, tr *tar.Reader, sparse bool) (int64, error) {
	if !sparse {
		return io.CopyBuffer(fdWriter(fd), tr, a.buf)
	}
	var n int64
	zero := make([]byte, len(a.buf))
	for {
		k, err := io.ReadFull(tr, a.buf)
		if k > 0 {
			if bytes.Equal(a.buf[:k], zero[:k]) {
				if _, serr := unix.Seek(fd, int64(k), io.SeekCurrent); serr != nil {
					return n, serr
				}
			} else if _, werr := fdWriter(fd).Write(a.buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return n, unix.Ftruncate(fd, n) // a hole at the end needs the size set
		}
		if err != nil {
			return n, err
		}
	}
}

// fmeta sets owner, xattrs, mode and times of an open regular file.
func (a *applier) fmeta(fd int, p string, hdr *tar.Header, mode uint32) error {
	if a.root0 {
		if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := a.xattrs(p, hdr); err != nil {
		return err
	}
	// After chown, which clears set-id bits.
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return futimens(fd, hdr.ModTime)
}

// meta sets owner, xattrs, mode (when chmod) and, except for directories
// (set last), times of p without following a symlink at p.
func (a *applier) meta(p string, hdr *tar.Header, mode uint32, chmod bool) error {
	if a.root0 {
		if err := unix.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := a.xattrs(p, hdr); err != nil {
		return err
	}
	if chmod {
		if err := unix.Fchmodat(unix.AT_FDCWD, p, mode, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return a.chtimes(p, hdr.ModTime)
}

func (a *applier) chtimes(p string, mtime time.Time) error {
	ts := unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", p, err)
	}
	return nil
}

// xattrs sets the entry's extended attributes, except trusted.* (which
// overlayfs trusts; an image must not set them) and user.* on what the
// kernel allows them on only for regular files and directories.
func (a *applier) xattrs(p string, hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		key, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok || strings.HasPrefix(key, "trusted.") {
			continue
		}
		if strings.HasPrefix(key, "user.") && hdr.Typeflag != tar.TypeDir && !isRegular(hdr) {
			continue
		}
		if err := unix.Lsetxattr(p, key, []byte(v), 0); err != nil {
			return fmt.Errorf("set xattr %s: %w", key, err)
		}
	}
	return nil
}
