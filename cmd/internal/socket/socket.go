// Package socket listens on the unix sockets layerlab's servers serve
// (layerlabd's API, the snapshotter's gRPC), mode 0660 from the first
// moment, taking over the socket of a server that died and refusing one a
// live server answers on.
package socket

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// Listen listens on a unix socket at path, mode 0660 (root and a group
// given with chgrp). A socket at path that nobody answers on (its server
// was killed) is removed; one a live server answers on is refused with
// drivers.ErrAlreadyExists, as is anything at path that is not a socket
// (drivers.ErrInvalidArgument): nothing but a dead server's socket is
// ever deleted.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket: %w; remove it or choose another path", path, drivers.ErrInvalidArgument)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("%s: %w: a server is listening there; stop it first or choose another path", path, drivers.ErrAlreadyExists)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s: checking whether a server still listens: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	// The socket exists with the umask's mode until the chmod: keep it
	// private meanwhile.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, err
	}
	return l.(*net.UnixListener), nil
}
