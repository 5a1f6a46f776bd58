package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/containers"
)

// withRootfs runs fn on the container's mounted rootfs. A running
// container's is mounted already; a stopped one's is mounted for fn and
// unmounted after, with the container's lock held so a start waits
// rather than mounting it a second time.
func (d *Daemon) withRootfs(ctx context.Context, ref string, fn func(r containers.Record, rootfs string) error) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	l.mu.Lock()
	if l.c != nil {
		l.mu.Unlock()
		return fn(r, d.rootfs(r.ID))
	}
	defer l.mu.Unlock()
	drv, err := d.Driver(r.Driver)
	if err != nil {
		return err
	}
	mounts, err := drv.Mounts(ctx, r.SnapshotKey)
	if err != nil {
		return err
	}
	rootfs := d.rootfs(r.ID)
	if err := mount.All(mounts, rootfs); err != nil {
		return fmt.Errorf("mounting the rootfs of %s: %w", r.Name, err)
	}
	return errors.Join(fn(r, rootfs), mount.UnmountAll(rootfs))
}

// pathStat is the stat of the entry p names in the rootfs, as the
// X-Docker-Container-Path-Stat header carries it: a symlink's linkTarget
// is where it leads in the container.
func pathStat(root *inRoot, rootfs, p string, e entryAt) container.PathStat {
	name := path.Base(path.Clean("/" + p))
	st := container.PathStat{Name: name, Size: e.st.Size, Mode: fileMode(e.st.Mode), Mtime: mtime(&e.st)}
	if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
		if fd, err := root.openat2(p, unix.O_PATH); err == nil {
			st.LinkTarget, _ = containerPath(rootfs, fd)
			unix.Close(fd)
		}
		if st.LinkTarget == "" {
			// A dangling link: where it points, resolved by hand.
			buf := make([]byte, unix.PathMax)
			if n, err := unix.Readlinkat(e.dir, e.base, buf); err == nil {
				t := string(buf[:n])
				if !path.IsAbs(t) {
					t = path.Join(path.Dir(path.Clean("/"+p)), t)
				}
				st.LinkTarget = path.Clean(t)
			}
		}
	}
	return st
}

// StatContainerPath answers HEAD /containers/{id}/archive.
func (d *Daemon) StatContainerPath(ctx context.Context, ref, p string) (container.PathStat, error) {
	var out container.PathStat
	err := d.withRootfs(ctx, ref, func(_ containers.Record, rootfs string) error {
		root, err := openInRoot(rootfs)
		if err != nil {
			return err
		}
		defer root.close()
		e, done, err := root.lookup(p)
		if err != nil {
			return err
		}
		defer done()
		out = pathStat(root, rootfs, p, e)
		return nil
	})
	return out, err
}

// ArchiveContainerPath answers GET /containers/{id}/archive: a tar of the
// path, named by its base name as dockerd names it; ready gets the stat
// before the first byte is written.
func (d *Daemon) ArchiveContainerPath(ctx context.Context, ref, p string, w io.Writer, ready func(container.PathStat)) error {
	return d.withRootfs(ctx, ref, func(r containers.Record, rootfs string) error {
		root, err := openInRoot(rootfs)
		if err != nil {
			return err
		}
		defer root.close()
		d.containerEvent(r, eventtypes.ActionArchivePath, map[string]string{"path": p})
		e, done, err := root.lookup(p)
		if err != nil {
			return err
		}
		defer done()
		st := pathStat(root, rootfs, p, e)
		ready(st)
		name := st.Name
		if name == "/" {
			name = "."
		}
		tw := newTarWriter(ctx, w)
		return errors.Join(tw.add(e.dir, e.base, name, &e.st), tw.close())
	})
}

// ExportContainer answers GET /containers/{id}/export: the whole rootfs
// as a tar, names relative to it.
func (d *Daemon) ExportContainer(ctx context.Context, ref string, w io.Writer) error {
	return d.withRootfs(ctx, ref, func(r containers.Record, rootfs string) error {
		root, err := openInRoot(rootfs)
		if err != nil {
			return err
		}
		defer root.close()
		d.containerEvent(r, eventtypes.ActionExport, nil)
		var st unix.Stat_t
		if err := unix.Fstat(root.fd, &st); err != nil {
			return err
		}
		tw := newTarWriter(ctx, w)
		return errors.Join(tw.add(root.fd, ".", "", &st), tw.close())
	})
}

// ExtractToContainer answers PUT /containers/{id}/archive: the tar is
// spooled and checked whole first, so an entry leaving the directory is
// refused before anything is written; then it is extracted into the
// directory p names (symlinks resolved inside the rootfs).
func (d *Daemon) ExtractToContainer(ctx context.Context, ref, p string, o api.ExtractOptions, body io.Reader) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	if r.HostConfig.ReadonlyRootfs {
		return fmt.Errorf("container rootfs is marked read-only: %w", drivers.ErrFailedPrecondition)
	}
	spool, err := d.images.TempFile("archive-")
	if err != nil {
		return err
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if err := checkArchive(io.TeeReader(body, spool)); err != nil {
		return err
	}
	return d.withRootfs(ctx, r.ID, func(_ containers.Record, rootfs string) error {
		root, err := openInRoot(rootfs)
		if err != nil {
			return err
		}
		defer root.close()
		fd, err := root.openat2(p, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("extraction point %s: %w", p, err)
		}
		dst := &inRoot{fd: fd}
		defer dst.close()
		if _, err := spool.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := extract(ctx, dst, spool, extractOptions{noOverwriteDirNonDir: o.NoOverwriteDirNonDir, copyUIDGID: o.CopyUIDGID}); err != nil {
			return err
		}
		d.containerEvent(r, eventtypes.ActionExtractToDir, map[string]string{"path": p})
		return nil
	})
}
