package daemon

import (
	"archive/tar"
	"errors"
	"io"
	"path"
	"strings"
	"sync"
)

// A container's snapshot holds what the runtime made in it to mount on:
// the empty /etc/hosts, /etc/hostname and /etc/resolv.conf the managed
// files are bound onto when the image lacks them (and /etc itself when
// the image has none), and /proc, /sys and /dev when the image lacks
// those. dockerd makes them in an init layer under the container's, so
// no commit, build step or `docker diff` shows them; layerlabd has no init
// layer and leaves them out of the container's layer tar instead.

// runtimeFile says whether the entry name (cleaned, relative) is a
// mountpoint file the runtime made: one of the managed /etc files, empty.
func runtimeFile(name string, h *tar.Header) bool {
	switch name {
	case "etc/hosts", "etc/hostname", "etc/resolv.conf":
		return (h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA) && h.Size == 0 //nolint:staticcheck // TypeRegA in old tars
	}
	return false
}

// runtimeDir says whether name is a directory the runtime mounts a
// filesystem on; it is left out when the layer has nothing under it.
func runtimeDir(name string) bool { return name == "proc" || name == "sys" || name == "dev" }

// mountpointFilter is a layer.WithTarFilter that drops the runtime's
// mountpoints from a container's layer tar: the managed /etc files, /etc
// when nothing else of the layer is in it, and the empty mount
// directories. The layer's other entries pass unchanged.
func mountpointFilter(w io.Writer) io.WriteCloser {
	pr, pw := io.Pipe()
	f := &tarFilter{pw: pw, done: make(chan error, 1)}
	go func() {
		err := trimMountpoints(pr, w)
		pr.CloseWithError(err) // a writer still writing learns it stopped
		f.done <- err
	}()
	return f
}

// tarFilter is the writing end of mountpointFilter.
type tarFilter struct {
	pw   *io.PipeWriter
	done chan error
	once sync.Once
	err  error
}

func (f *tarFilter) Write(p []byte) (int, error) { return f.pw.Write(p) }

// Close ends the tar and waits for the filter; it may be called again.
func (f *tarFilter) Close() error {
	f.once.Do(func() {
		f.pw.Close()
		f.err = <-f.done
	})
	return f.err
}

// trimMountpoints copies the tar from r to w without the runtime's
// mountpoints. A directory entry that may be one (etc, proc, sys, dev) is
// held until the entries after it show whether the layer has something
// of its own in it (tars list a directory before what it holds).
func trimMountpoints(r io.Reader, w io.Writer) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	var held *tar.Header // the directory waiting
	heldName, dropped := "", false
	settle := func(next string) error {
		if held == nil || strings.HasPrefix(next, heldName+"/") {
			return nil
		}
		// Nothing of the layer's own under it: it goes if it held only
		// the runtime's files (etc) or nothing at all (proc, sys, dev).
		keep := heldName == "etc" && !dropped
		h := held
		held = nil
		if keep {
			return tw.WriteHeader(h)
		}
		return nil
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if err := settle(name); err != nil {
			return err
		}
		switch {
		case runtimeFile(name, h):
			dropped = dropped || held != nil
			continue
		case h.Typeflag == tar.TypeDir && (name == "etc" || runtimeDir(name)):
			held, heldName, dropped = h, name, false
			continue
		}
		if held != nil { // something of the layer's own in it: it stays
			if err := tw.WriteHeader(held); err != nil {
				return err
			}
			held = nil
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := settle(""); err != nil {
		return err
	}
	return tw.Close()
}
