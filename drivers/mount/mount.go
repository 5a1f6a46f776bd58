// Package mount is layerlab's one helper for mounting and unmounting the
// []drivers.Mount that drivers return, and for reading mountinfo.
package mount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// flagOptions maps fstab-style flag options to mount(2) flags; the bool
// says whether the option clears the flag instead of setting it.
var flagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro":          {false, unix.MS_RDONLY},
	"rw":          {true, unix.MS_RDONLY},
	"bind":        {false, unix.MS_BIND},
	"rbind":       {false, unix.MS_BIND | unix.MS_REC},
	"nosuid":      {false, unix.MS_NOSUID},
	"suid":        {true, unix.MS_NOSUID},
	"nodev":       {false, unix.MS_NODEV},
	"dev":         {true, unix.MS_NODEV},
	"noexec":      {false, unix.MS_NOEXEC},
	"exec":        {true, unix.MS_NOEXEC},
	"sync":        {false, unix.MS_SYNCHRONOUS},
	"async":       {true, unix.MS_SYNCHRONOUS},
	"noatime":     {false, unix.MS_NOATIME},
	"atime":       {true, unix.MS_NOATIME},
	"nodiratime":  {false, unix.MS_NODIRATIME},
	"relatime":    {false, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME},
	"remount":     {false, unix.MS_REMOUNT},
	"defaults":    {false, 0},
}

// parse splits options into mount(2) flags and the data string.
func parse(options []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range options {
		if f, ok := flagOptions[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		data = append(data, o)
	}
	return flags, strings.Join(data, ",")
}

// All mounts every mount in order on target. On failure the mounts already
// made are undone.
// Remount entries (aufs's "append:" branches) change the mount below them
// and add none, so only the others are counted for the undo.
func All(mounts []drivers.Mount, target string) error {
	made := 0
	for _, m := range mounts {
		if err := one(m, target); err != nil {
			for ; made > 0; made-- {
				_ = Unmount(target)
			}
			return err
		}
		if flags, _ := parse(m.Options); flags&unix.MS_REMOUNT == 0 {
			made++
		}
	}
	return nil
}

// Filesystem mounts a filesystem of type fstype from source (a block
// device, or a name for filesystems that have none) on target. Options are
// fstab-style, as in a drivers.Mount: flags such as ro or noatime become
// mount(2) flags, the rest the filesystem's data.
func Filesystem(source, target, fstype string, options ...string) error {
	return one(drivers.Mount{Type: fstype, Source: source, Options: options}, target)
}

func one(m drivers.Mount, target string) error {
	flags, data := parse(m.Options)
	fstype := m.Type
	if flags&unix.MS_BIND != 0 || fstype == "bind" {
		fstype = ""
		flags |= unix.MS_BIND
	}
	ro := flags&unix.MS_RDONLY != 0
	var err error
	if m.Type == "overlay" && len(data) >= os.Getpagesize() {
		err = mountCompact(m.Source, target, fstype, flags, data)
	} else {
		err = unix.Mount(m.Source, target, fstype, flags, data)
	}
	if err != nil {
		return fmt.Errorf("mount %s %s on %s (options %q): %w", m.Type, m.Source, target, strings.Join(m.Options, ","), err)
	}
	// A read-only bind needs a second call: the kernel ignores MS_RDONLY on
	// the first bind.
	if flags&unix.MS_BIND != 0 && ro {
		rflags := flags | unix.MS_REMOUNT | unix.MS_RDONLY
		if err := unix.Mount("", target, "", rflags, ""); err != nil {
			_ = Unmount(target)
			return fmt.Errorf("remount %s read-only: %w", target, err)
		}
	}
	return nil
}

// mountCompact mounts an overlay whose options exceed one page by making the
// lowerdir paths relative to their common parent directory. The working
// directory is per process, so the chdir happens on a locked OS thread that
// first unshares its filesystem context; the thread is never handed back to
// the Go scheduler and dies with its goroutine.
func mountCompact(source, target, fstype string, flags uintptr, data string) error {
	dir, compact, err := compactLowerdir(data)
	if err != nil {
		return err
	}
	if len(compact) >= os.Getpagesize() {
		return fmt.Errorf("overlay options are %d bytes even with relative lowerdirs, more than one page (%d): %w", len(compact), os.Getpagesize(), unix.E2BIG)
	}
	target, err = filepath.Abs(target)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's cwd is private
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs context: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		err := unix.Mount(source, target, fstype, flags, compact)
		// Leave dir before answering: the thread exits only some time
		// after the goroutine ends, and until then its cwd would keep
		// dir's filesystem busy for an unmount that follows at once.
		if cerr := unix.Chdir("/"); err == nil && cerr != nil {
			err = fmt.Errorf("leave %s: %w", dir, cerr)
		}
		errc <- err
	}()
	return <-errc
}

// compactLowerdir rewrites lowerdir=... so every entry is relative to the
// entries' common parent, and returns that parent.
func compactLowerdir(data string) (string, string, error) {
	opts := strings.Split(data, ",")
	for i, o := range opts {
		v, ok := strings.CutPrefix(o, "lowerdir=")
		if !ok {
			continue
		}
		dirs := strings.Split(v, ":")
		common := filepath.Dir(dirs[0])
		for _, d := range dirs {
			if filepath.Dir(d) != common {
				return "", "", fmt.Errorf("overlay options exceed one page and the lowerdirs share no parent (%s, %s): %w", common, filepath.Dir(d), unix.E2BIG)
			}
		}
		rel := make([]string, len(dirs))
		for j, d := range dirs {
			rel[j] = filepath.Base(d)
		}
		opts[i] = "lowerdir=" + strings.Join(rel, ":")
		return common, strings.Join(opts, ","), nil
	}
	return "", "", fmt.Errorf("overlay options exceed one page and have no lowerdir to shorten: %w", unix.E2BIG)
}

// Unmount unmounts target once. A busy target is retried for a moment
// (a process may be leaving it); if it stays busy the error wraps EBUSY
// and drivers.ErrFailedPrecondition. It never detaches lazily: a lazy
// detach hides the mount while whatever holds it keeps the storage in
// use, so the caller would go on to delete storage that is still live.
func Unmount(target string) error {
	var err error
	for i := 0; i < 10; i++ {
		if err = unix.Unmount(target, 0); err == nil || !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
	switch {
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %s: %w: %w (a process has a file open or its cwd in it; find it with `fuser -vm %s`)", target, err, drivers.ErrFailedPrecondition, target)
	case err != nil:
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// UnmountAll unmounts everything stacked on target; a target with nothing
// mounted is not an error.
func UnmountAll(target string) error {
	for {
		err := Unmount(target)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Mounted reports whether path is a mount point.
func Mounted(path string) (bool, error) {
	return mountinfo.Mounted(path)
}

// Lookup returns the mountinfo entry of the mount that holds path.
func Lookup(path string) (*mountinfo.Info, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return nil, err
	}
	best := holder(mounts, path)
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s: %w", path, drivers.ErrNotFound)
	}
	return best, nil
}

// Under returns the mount points at or below dir, deepest first, so they
// can be unmounted in that order.
func Under(dir string) ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	var points []string
	for _, m := range mounts {
		points = append(points, m.Mountpoint)
	}
	for i, j := 0, len(points)-1; i < j; i, j = i+1, j-1 {
		points[i], points[j] = points[j], points[i]
	}
	return points, nil
}

// InUse returns the mount point of a mount that uses one of paths (or
// what lies below them), or "" when none does. A mount uses a path when
// its mount point is below the path, when its options name the path
// (overlay's lowerdir, upperdir and workdir; aufs's branches), or when it
// shows part of the path's filesystem at or below the path (a bind mount,
// or a mount of a subvolume or dataset that lives there). The mount that
// holds a path itself (a zfs dataset mounted at its directory) is not a
// user of it.
func InUse(paths ...string) (string, error) {
	type target struct {
		path, given, rel string
		holder           int
		major            int
		minor            int
	}
	// One read of mountinfo serves the lookups and the scan.
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "", err
	}
	var targets []target
	for _, p := range paths {
		given := filepath.Clean(p)
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			p = resolved
		}
		h := holder(mounts, p)
		if h == nil {
			return "", fmt.Errorf("no mount holds %s: %w", p, drivers.ErrNotFound)
		}
		rel, err := filepath.Rel(h.Mountpoint, p)
		if err != nil {
			return "", err
		}
		targets = append(targets, target{path: p, given: given, rel: filepath.Join(h.Root, rel), holder: h.ID, major: h.Major, minor: h.Minor})
	}
	for _, m := range mounts {
		for _, t := range targets {
			if m.ID == t.holder {
				continue
			}
			switch {
			case below(m.Mountpoint, t.path) && m.Mountpoint != t.path,
				m.Major == t.major && m.Minor == t.minor && below(m.Root, t.rel),
				namesPath(m.VFSOptions, t.path), namesPath(m.VFSOptions, t.given):
				return m.Mountpoint, nil
			}
		}
	}
	return "", nil
}

// holder returns the mount that holds path: the deepest mount point at or
// above it, the later of two on one point (it shadows the earlier).
func holder(mounts []*mountinfo.Info, path string) *mountinfo.Info {
	var best *mountinfo.Info
	for _, m := range mounts {
		if below(path, m.Mountpoint) && (best == nil || len(m.Mountpoint) >= len(best.Mountpoint)) {
			best = m
		}
	}
	return best
}

// below reports whether path is dir or lies below it.
func below(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// namesPath reports whether mount options name dir or a path below it.
func namesPath(options, dir string) bool {
	for _, opt := range strings.Split(options, ",") {
		_, v, ok := strings.Cut(opt, "=")
		if !ok {
			continue
		}
		for _, p := range strings.Split(v, ":") {
			if p, _, _ = strings.Cut(p, "="); filepath.IsAbs(p) && below(filepath.Clean(p), dir) {
				return true
			}
		}
	}
	return false
}

// SyncFS flushes the filesystem mounted under path (syncfs(2)), so statfs
// and block counts reflect what was written.
func SyncFS(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", path, err)
	}
	return nil
}

// MakeShared makes the mount at target a shared mount point: mounts made
// below it later reach the copies of it in other mount namespaces whose
// propagation is slave (a daemon a test starts with unshare).
func MakeShared(target string) error {
	if err := unix.Mount("", target, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", target, err)
	}
	return nil
}
