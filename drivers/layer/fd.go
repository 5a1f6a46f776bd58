package layer

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Regular files are created relative to a descriptor of the snapshot's
// root and finished through their own descriptor, as tar -x does: a short
// path lookup per file instead of the whole host path on every system
// call, which was most of what separated Apply from tar on layers of many
// small files. openat2 also refuses, in the kernel, any symlink on the way
// and any escape from the root: the path was resolved inside the root
// already, so either would mean the tree changed under Apply.

// rootFD is an O_PATH descriptor of the root Apply writes into.
type rootFD struct {
	root string
	fd   int
	old  bool // openat2 is missing (Linux before 5.6): host paths it is
}

func openRoot(root string) (*rootFD, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	return &rootFD{root: root, fd: fd}, nil
}

func (r *rootFD) close() {
	if r != nil && r.fd > 0 {
		unix.Close(r.fd)
		r.fd = 0
	}
}

// createExcl creates the regular file p, a host path under the root, for
// writing, exclusively: a symlink or anything else already at p makes it
// fail with EEXIST.
func (r *rootFD) createExcl(p string) (int, error) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	rel, ok := strings.CutPrefix(p, r.root+"/")
	for !r.old && ok {
		fd, err := unix.Openat2(r.fd, rel, &unix.OpenHow{Flags: flags, Mode: 0o600,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOSYS):
			r.old = true
			continue
		}
		return fd, err
	}
	for {
		fd, err := unix.Open(p, flags, 0o600)
		if !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// fdWriter writes to a raw descriptor.
type fdWriter int

func (w fdWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := unix.Write(int(w), p[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return n, err
		}
		n += k
	}
	return n, nil
}

// futimens sets both times of the open file fd to mtime.
func futimens(fd int, mtime time.Time) error {
	ts := [2]unix.Timespec{
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
	// utimensat with a NULL path is futimens(3).
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("set times: %w", errno)
	}
	return nil
}
