package daemon

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// A container's paths are resolved by the kernel inside its rootfs
// (openat2 RESOLVE_IN_ROOT): ".." stops at the root and a symlink, absolute
// or relative, is followed as the container would follow it, so no path
// or link of the container reaches the host. Below the resolved path every
// file is opened relative to its directory's descriptor without following
// symlinks, so a tree changed during a copy still cannot lead outside it.

// inRoot is an O_PATH descriptor of a directory that paths resolve in.
type inRoot struct{ fd int }

func openInRoot(dir string) (*inRoot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &inRoot{fd: fd}, nil
}

func (r *inRoot) close() { unix.Close(r.fd) }

// openat2 opens p under r's directory as if it were "/"; an absent path
// wraps drivers.ErrNotFound.
func (r *inRoot) openat2(p string, flags uint64) (int, error) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		p = "."
	}
	for {
		fd, err := unix.Openat2(r.fd, p, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOENT):
			return -1, fmt.Errorf("Could not find the file %s in container: %w", "/"+p, drivers.ErrNotFound)
		case errors.Is(err, unix.ENOTDIR):
			return -1, fmt.Errorf("%s: a component of the path is not a directory: %w", "/"+p, drivers.ErrInvalidArgument)
		case err != nil:
			return -1, fmt.Errorf("open %s in the container: %w", "/"+p, err)
		}
		return fd, nil
	}
}

// entryAt is a name in an open directory: the last component of a path,
// not followed if it is a symlink.
type entryAt struct {
	dir  int    // O_PATH descriptor of the directory, owned by the caller
	base string // "." for the directory itself
	st   unix.Stat_t
}

// lookup resolves p's directory in r and lstats its last component. A
// path ending in "/" or "/." (or the root) names the directory it
// resolves to, following a final symlink, as docker cp reads it. close
// releases the directory.
func (r *inRoot) lookup(p string) (e entryAt, closeFn func(), err error) {
	clean := path.Clean("/" + p)
	dir, base := path.Split(clean)
	if clean == "/" || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") {
		dir, base = clean, "."
	}
	fd, err := r.openat2(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return e, nil, err
	}
	e = entryAt{dir: fd, base: base}
	if err := unix.Fstatat(fd, base, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) {
			return e, nil, fmt.Errorf("Could not find the file %s in container: %w", clean, drivers.ErrNotFound)
		}
		return e, nil, fmt.Errorf("stat %s in the container: %w", clean, err)
	}
	return e, func() { unix.Close(fd) }, nil
}

// fileMode converts a stat mode to Go's, which the path stat header
// carries.
func fileMode(m uint32) os.FileMode {
	mode := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= os.ModeDir
	case unix.S_IFLNK:
		mode |= os.ModeSymlink
	case unix.S_IFIFO:
		mode |= os.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= os.ModeSocket
	case unix.S_IFCHR:
		mode |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFBLK:
		mode |= os.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

func mtime(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

// tarWriter writes a tree read through descriptors as a tar, hard links
// as links to the first name seen.
type tarWriter struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[[2]uint64]string
}

func newTarWriter(ctx context.Context, w io.Writer) *tarWriter {
	return &tarWriter{ctx: ctx, tw: tar.NewWriter(w), links: map[[2]uint64]string{}}
}

// add writes the entry base of dir (st is its lstat) under name, and a
// directory's tree below it; an empty name writes only the tree (the
// export of a whole rootfs).
func (t *tarWriter) add(dir int, base, name string, st *unix.Stat_t) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	h := &tar.Header{Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: mtime(st), Format: tar.FormatPAX}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, name+"/"
		if name != "" {
			if err := t.tw.WriteHeader(h); err != nil {
				return err
			}
		}
		return t.dir(dir, base, name)
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := t.links[key]; ok && st.Nlink > 1 {
			h.Typeflag, h.Linkname = tar.TypeLink, first
			return t.tw.WriteHeader(h)
		}
		if st.Nlink > 1 {
			t.links[key] = name
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		return t.file(dir, base, h)
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dir, base, buf)
		if err != nil {
			return fmt.Errorf("readlink %s: %w", name, err)
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return nil // sockets are not archived
	}
	return t.tw.WriteHeader(h)
}

func (t *tarWriter) file(dir int, base string, h *tar.Header) error {
	// O_NONBLOCK: a running container may have put a fifo where the
	// file was, and opening it must not hang the copy.
	fd, err := unix.Openat(dir, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", h.Name, err)
	}
	f := os.NewFile(uintptr(fd), h.Name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%s changed while it was copied: %w", h.Name, drivers.ErrFailedPrecondition)
	}
	// File capabilities travel with the file, as in dockerd's tars.
	buf := make([]byte, 256)
	if n, err := unix.Fgetxattr(fd, "security.capability", buf); err == nil {
		h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(buf[:n])}
	}
	if err := t.tw.WriteHeader(h); err != nil {
		return err
	}
	// A file that grew is cut at its stat size; one that shrank fails
	// the tar, which then says it is short.
	_, err = io.Copy(t.tw, io.LimitReader(f, h.Size))
	return err
}

func (t *tarWriter) dir(parent int, base, name string) error {
	fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s/: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read %s/: %w", name, err)
	}
	slices.Sort(names)
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile (a running container)
			}
			return fmt.Errorf("stat %s/%s: %w", name, n, err)
		}
		child := n
		if name != "" {
			child = name + "/" + n
		}
		if err := t.add(fd, n, child, &st); err != nil {
			return err
		}
	}
	return nil
}

func (t *tarWriter) close() error { return t.tw.Close() }

// extractOptions are PUT archive's query options.
type extractOptions struct {
	noOverwriteDirNonDir bool // refuse replacing a directory by a non-directory and back
	copyUIDGID           bool // keep the tar's owners; else root owns what is written
}

// checkArchive reads a whole tar and refuses, before anything is
// written, an entry that would land outside the directory it is
// extracted to or that docker cp has no business writing.
func checkArchive(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w: %w", err, drivers.ErrInvalidArgument)
		}
		if !localName(h.Name) {
			return fmt.Errorf("archive entry %q leaves the directory it is extracted to: %w", h.Name, drivers.ErrInvalidArgument)
		}
		switch h.Typeflag {
		case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeFifo, tar.TypeXGlobalHeader:
		case tar.TypeLink:
			if !localName(h.Linkname) {
				return fmt.Errorf("archive entry %q links to %q outside the directory it is extracted to: %w", h.Name, h.Linkname, drivers.ErrInvalidArgument)
			}
		default:
			return fmt.Errorf("archive entry %q: type %q is not copied into containers: %w", h.Name, h.Typeflag, drivers.ErrInvalidArgument)
		}
	}
}

// localName accepts a relative name that stays below its directory.
func localName(n string) bool {
	if n == "" || strings.HasPrefix(n, "/") {
		return false
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return false
		}
	}
	return true
}

// extract writes the tar (checked by checkArchive) into the directory
// dst, resolving every entry's parent with dst as its root: a symlink
// met on the way, in the archive or already there, stays inside dst.
func extract(ctx context.Context, dst *inRoot, r io.Reader, o extractOptions) error {
	tr := tar.NewReader(r)
	type dirTime struct {
		name string
		t    time.Time
	}
	var dirs []dirTime
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w: %w", err, drivers.ErrInvalidArgument)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := path.Clean(h.Name)
		if name == "." {
			continue // the directory extracted into keeps its own metadata
		}
		if err := extractEntry(dst, name, h, tr, o); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{name, h.ModTime})
		}
	}
	// Directory times last: writing their children changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		fd, err := dst.openat2(dirs[i].name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue
		}
		ts := []unix.Timespec{unix.NsecToTimespec(dirs[i].t.UnixNano()), unix.NsecToTimespec(dirs[i].t.UnixNano())}
		_ = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
		unix.Close(fd)
	}
	return nil
}

func extractEntry(dst *inRoot, name string, h *tar.Header, tr io.Reader, o extractOptions) error {
	dirName, base := path.Split(name)
	parent, err := dst.openat2(dirName, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("archive entry %q: its directory: %w", h.Name, err)
	}
	defer unix.Close(parent)
	var st unix.Stat_t
	exists := unix.Fstatat(parent, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := h.Typeflag == tar.TypeDir
	if exists {
		wasDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case isDir && wasDir: // merged into
		case o.noOverwriteDirNonDir && wasDir:
			return fmt.Errorf("cannot overwrite directory %q with non-directory %q: %w", name, h.Name, drivers.ErrInvalidArgument)
		case o.noOverwriteDirNonDir && isDir:
			return fmt.Errorf("cannot overwrite non-directory %q with directory %q: %w", name, h.Name, drivers.ErrInvalidArgument)
		case wasDir:
			// Only an empty directory is replaced; a full one is refused
			// rather than deleted wholesale.
			if err := unix.Unlinkat(parent, base, unix.AT_REMOVEDIR); err != nil {
				return fmt.Errorf("cannot replace directory %q with %q: %v: %w", name, h.Name, err, drivers.ErrInvalidArgument)
			}
		default:
			if err := unix.Unlinkat(parent, base, 0); err != nil {
				return fmt.Errorf("replacing %q: %w", name, err)
			}
		}
	}
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(parent, base, 0o700); err != nil {
				return fmt.Errorf("mkdir %q: %w", name, err)
			}
		}
	case tar.TypeReg:
		fd, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %q: %w", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		_, err = io.Copy(f, tr)
		if err == nil {
			err = f.Chmod(os.FileMode(mode & 0o777))
		}
		if err == nil && mode&^0o777 != 0 {
			err = unix.Fchmod(fd, mode)
		}
		if err == nil && o.copyUIDGID {
			err = f.Chown(h.Uid, h.Gid)
		}
		if err == nil {
			err = unix.UtimesNanoAt(fd, "", []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}, unix.AT_EMPTY_PATH)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %q: %w", name, err)
		}
		return nil
	case tar.TypeSymlink:
		if err := unix.Symlinkat(h.Linkname, parent, base); err != nil {
			return fmt.Errorf("symlink %q: %w", name, err)
		}
	case tar.TypeLink:
		oldDir, oldBase := path.Split(path.Clean(h.Linkname))
		ofd, err := dst.openat2(oldDir, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link %q to %q: %w", name, h.Linkname, err)
		}
		err = unix.Linkat(ofd, oldBase, parent, base, 0)
		unix.Close(ofd)
		if err != nil {
			return fmt.Errorf("hard link %q to %q: %w", name, h.Linkname, err)
		}
		return nil
	case tar.TypeFifo:
		if err := unix.Mknodat(parent, base, unix.S_IFIFO|mode&0o777, 0); err != nil {
			return fmt.Errorf("mkfifo %q: %w", name, err)
		}
	}
	// The rest is set on the name, never through a symlink: a directory
	// through its own descriptor, a fifo keeps mknod's mode.
	if h.Typeflag == tar.TypeDir {
		fd, err := unix.Openat(parent, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %q: %w", name, err)
		}
		err = unix.Fchmod(fd, mode)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("chmod %q: %w", name, err)
		}
	}
	if o.copyUIDGID {
		if err := unix.Fchownat(parent, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %q: %w", name, err)
		}
	}
	if h.Typeflag != tar.TypeDir {
		ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
		_ = unix.UtimesNanoAt(parent, base, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// containerPath is the path in the container of an open descriptor under
// root (the host path the kernel resolved it to, with root cut off).
func containerPath(root string, fd int) (string, error) {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if p == root {
		return "/", nil
	}
	rel, ok := strings.CutPrefix(p, root+"/")
	if !ok {
		return "", fmt.Errorf("%s resolved outside the container's rootfs", p)
	}
	return "/" + rel, nil
}
