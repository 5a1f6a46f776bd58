package layer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// hashReader passes reads through while another goroutine hashes them,
// so the first pass's reading and header checks overlap with SHA-256 of
// the DiffID on a second core.
type hashReader struct {
	r    io.Reader
	work chan []byte // chunks to hash, in order
	free chan []byte // chunk buffers to reuse
	done chan digest.Digest
}

const hashChunks = 4

func newHashReader(r io.Reader) *hashReader {
	h := &hashReader{r: r, work: make(chan []byte, hashChunks), free: make(chan []byte, hashChunks), done: make(chan digest.Digest, 1)}
	go func() {
		d := sha256.New()
		for b := range h.work {
			d.Write(b)
			h.free <- b[:0]
		}
		h.done <- digest.NewDigest(digest.SHA256, d)
	}()
	for i := 0; i < hashChunks; i++ {
		h.free <- make([]byte, 0, 1<<20)
	}
	return h
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	for rest := p[:n]; len(rest) > 0; {
		b := <-h.free
		k := min(len(rest), cap(b))
		h.work <- append(b, rest[:k]...)
		rest = rest[k:]
	}
	return n, err
}

// sum stops the hashing goroutine and returns the digest of everything
// read. Call it once, after the last Read.
func (h *hashReader) sum() digest.Digest {
	close(h.work)
	return <-h.done
}

// hashing is a DiffID being computed from a layer file by another
// goroutine.
type hashing struct {
	quit chan struct{}
	done chan struct{}
	d    digest.Digest
	err  error
}

// hashAt hashes ra from start to its end on another goroutine.
func hashAt(ra io.ReaderAt, start int64) *hashing {
	h := &hashing{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		d := sha256.New()
		buf := make([]byte, 1<<20)
		for off := start; ; {
			select {
			case <-h.quit:
				h.err = errors.New("hashing stopped")
				return
			default:
			}
			n, err := ra.ReadAt(buf, off)
			d.Write(buf[:n])
			off += int64(n)
			if errors.Is(err, io.EOF) {
				h.d = digest.NewDigest(digest.SHA256, d)
				return
			}
			if err != nil {
				h.err = fmt.Errorf("read layer: %w", err)
				return
			}
		}
	}()
	return h
}

// wait returns the digest once the whole file is hashed.
func (h *hashing) wait() (digest.Digest, error) {
	<-h.done
	return h.d, h.err
}

// stop ends the hashing if it is still going and waits for the
// goroutine to go. Call it once.
func (h *hashing) stop() {
	close(h.quit)
	<-h.done
}
