package layer

import (
	"crypto/sha256"
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
