package layer

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The second pass writes regular files on several goroutines when the
// layer is in a file (the input itself or the first pass's spool): the
// kernel's work per file (create, copy, chown, chmod, times) is most of an
// apply, and a tar of small files keeps one core waiting on it. Only files
// the first pass proved independent go to the pool: a real path no other
// entry of the layer names or links to, not sparse, and no opaque marker in
// the layer. Everything else runs in tar order on the main goroutine after
// the pool has drained (a barrier), so the order that matters — a whiteout
// before a new file, a hardlink after its target — is kept.
//
// The content is copied from the layer file at the entry's offset, with
// copy_file_range where the two files' filesystems allow it (no copy
// through user space), else pread and write.

// fileJob is one regular file for the pool: its host path, its header and
// where its content starts in the layer file.
type fileJob struct {
	p   string
	hdr *tar.Header
	off int64
}

// pool writes fileJobs. A job whose path is taken by something (a lower
// layer's file, directory or symlink) is not handled there: removing it
// touches the applier's caches, so it waits for the next barrier.
type pool struct {
	a        *applier
	src      *os.File
	jobs     chan fileJob
	wg       sync.WaitGroup
	noCopy   atomic.Bool // copy_file_range refused once: pread+write from then on
	mu       sync.Mutex
	err      error     // the first failure
	deferred []fileJob // jobs left to the barrier
}

func newPool(a *applier, src *os.File) *pool {
	p := &pool{a: a, src: src, jobs: make(chan fileJob, 64)}
	n := min(max(runtime.GOMAXPROCS(0), 2), 4)
	for i := 0; i < n; i++ {
		go p.work()
	}
	return p
}

func (p *pool) work() {
	buf := make([]byte, 128<<10)
	for j := range p.jobs {
		if p.failed() == nil {
			deferred, err := p.write(j, buf, false)
			p.mu.Lock()
			switch {
			case err != nil && p.err == nil:
				p.err = fmt.Errorf("layer entry %q: %w", j.hdr.Name, err)
			case deferred:
				p.deferred = append(p.deferred, j)
			}
			p.mu.Unlock()
		}
		p.wg.Done()
	}
}

func (p *pool) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// add queues j; it returns a worker's earlier failure instead, if any.
func (p *pool) add(j fileJob) error {
	if err := p.failed(); err != nil {
		return err
	}
	p.wg.Add(1)
	p.jobs <- j
	return nil
}

// barrier waits for the queued jobs and writes the deferred ones, in the
// order they were queued, on the calling goroutine.
func (p *pool) barrier() error {
	p.wg.Wait()
	if err := p.failed(); err != nil {
		return err
	}
	// Workers finish out of order; the tar's order is the offsets'.
	later := p.deferred
	p.deferred = nil
	slices.SortFunc(later, func(x, y fileJob) int { return cmp.Compare(x.off, y.off) })
	buf := p.a.buf
	for _, j := range later {
		if _, err := p.write(j, buf, true); err != nil {
			return fmt.Errorf("layer entry %q: %w", j.hdr.Name, err)
		}
	}
	return nil
}

// stop ends the workers once nothing more is queued.
func (p *pool) stop() {
	p.wg.Wait()
	close(p.jobs)
}

// write creates j's file and fills it. Something already at the path makes
// it return deferred (in a worker) or be removed first (at a barrier).
func (p *pool) write(j fileJob, buf []byte, serial bool) (deferred bool, err error) {
	fd, err := p.a.rootfd.createExcl(j.p)
	if errors.Is(err, unix.EEXIST) {
		if !serial {
			return true, nil
		}
		if err := p.a.remove(j.p); err != nil {
			return false, err
		}
		fd, err = p.a.rootfd.createExcl(j.p)
	}
	if err != nil {
		return false, err
	}
	err = p.copy(fd, j, buf)
	if err == nil {
		err = p.a.fmeta(fd, j.p, j.hdr, uint32(j.hdr.Mode&0o7777))
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return false, err
}

// copy puts the entry's content from the layer file into fd.
func (p *pool) copy(fd int, j fileJob, buf []byte) error {
	off, left := j.off, j.hdr.Size
	for left > 0 && !p.noCopy.Load() {
		n, err := unix.CopyFileRange(int(p.src.Fd()), &off, fd, nil, int(min(left, 1<<30)), 0)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS),
			errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EBADF):
			if left != j.hdr.Size {
				return fmt.Errorf("copy content: %w", err)
			}
			p.noCopy.Store(true)
		case err != nil:
			return fmt.Errorf("copy content: %w", err)
		case n == 0:
			return fmt.Errorf("copy content: the layer file ends %d bytes early (was it truncated during Apply?)", left)
		default:
			left -= int64(n)
		}
	}
	for left > 0 {
		n, err := p.src.ReadAt(buf[:min(left, int64(len(buf)))], off)
		if n > 0 {
			if _, werr := fdWriter(fd).Write(buf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
			left -= int64(n)
		}
		if left > 0 && errors.Is(err, io.EOF) {
			return fmt.Errorf("copy content: the layer file ends %d bytes early (was it truncated during Apply?)", left)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("copy content: %w", err)
		}
	}
	return nil
}

// posReader is a buffered reader of a seekable layer that knows its
// offset and skips forward without reading: the tar reader seeks over the
// content of the files the first pass need not read and the pool copies.
type posReader struct {
	rs       io.ReadSeeker
	buf      []byte
	r, w     int   // unread bytes are buf[r:w]
	pos      int64 // the offset of buf[r]
	next     int64 // the offset of buf[w]
	seekNeed bool  // next moved past what was read: seek before reading
}

func newPosReader(rs io.ReadSeeker) (*posReader, error) {
	at, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	return &posReader{rs: rs, buf: make([]byte, 256<<10), pos: at, next: at}, nil
}

// at is the offset of the next byte Read returns.
func (p *posReader) at() int64 { return p.pos }

func (p *posReader) Read(b []byte) (int, error) {
	if p.r == p.w {
		if p.seekNeed {
			if _, err := p.rs.Seek(p.next, io.SeekStart); err != nil {
				return 0, err
			}
			p.seekNeed = false
		}
		n, err := p.rs.Read(p.buf)
		p.r, p.w = 0, n
		p.next += int64(n)
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return 0, err
		}
	}
	n := copy(b, p.buf[p.r:p.w])
	p.r += n
	p.pos += int64(n)
	return n, nil
}

// Seek moves forward (io.SeekCurrent only, as the tar reader asks) or
// reports the offset.
func (p *posReader) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return 0, fmt.Errorf("posReader: unsupported seek (%d, %d)", offset, whence)
	}
	if offset <= int64(p.w-p.r) {
		p.r += int(offset)
	} else {
		p.next = p.pos + offset
		p.r, p.w = 0, 0
		p.seekNeed = true
	}
	p.pos += offset
	return p.pos, nil
}
