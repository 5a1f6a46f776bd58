package layer

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
)

// blockSize is the tar block: headers, padding and the end-of-archive
// marker (two zero blocks) come in these.
const blockSize = 512

// counter passes reads through, counting and optionally copying the
// bytes. The first pass reads the layer through it.
type counter struct {
	r    io.Reader
	n    int64
	copy io.Writer // the spool, or nil
	err  error     // the copy's first error
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		if c.copy != nil && c.err == nil {
			if _, werr := c.copy.Write(p[:n]); werr != nil {
				c.err = werr
			}
		}
	}
	return n, err
}

// scanned is what the first pass learned.
type scanned struct {
	diffID digest.Digest
	prints []uint64 // one fingerprint per entry, for the second pass to compare
	opaque bool     // the layer has opaque markers (the applier tracks what it wrote)
	solo   []bool   // per entry: a regular file the pool may write (see pool.go)
	// pending, when set, is the DiffID still being hashed (none was
	// expected, so nothing waits for it before writing).
	pending *hashing
}

// scan is the first pass over a layer it must read whole: it checks every
// header against the model of root, hashes every byte for the DiffID and
// checks the end-of-archive marker. Content is read and dropped; copy,
// when set, receives every byte read up to the end marker (the spool the
// second pass reads).
func scan(ctx context.Context, r io.Reader, root string, o options, copy io.Writer) (_ scanned, err error) {
	hr := newHashReader(r)
	defer func() {
		if hr != nil {
			hr.sum()
		}
	}()
	// Buffered: archive/tar reads a header per 512-byte call.
	c := &counter{r: bufio.NewReaderSize(hr, 1<<20), copy: copy}
	s, err := walk(ctx, c, func() int64 { return c.n }, false, root, o)
	if err != nil {
		return s, err
	}
	c.copy = nil // what follows the end marker is hashed, never applied
	if _, err := io.CopyBuffer(io.Discard, c, make([]byte, 32<<10)); err != nil {
		return s, fmt.Errorf("read layer: %w", err)
	}
	if c.err != nil {
		return s, fmt.Errorf("spool layer: %w", c.err)
	}
	s.diffID, hr = hr.sum(), nil
	return s, checkDiffID(s.diffID, o)
}

// scanInPlace is the first pass over a seekable, uncompressed layer: the
// headers are read where they are and the contents of regular files
// skipped, while another goroutine hashes the file for the DiffID. With
// an expected DiffID it waits for the hash (a wrong layer is refused
// before anything is written); without one the hash goes on during the
// second pass and s.pending collects it.
func scanInPlace(ctx context.Context, rs io.ReadSeeker, ra io.ReaderAt, start int64, root string, o options) (scanned, error) {
	h := hashAt(ra, start)
	pr, err := newPosReader(rs)
	if err != nil {
		h.stop()
		return scanned{}, fmt.Errorf("read layer: %w", err)
	}
	s, err := walk(ctx, pr, pr.at, true, root, o)
	if err != nil {
		h.stop()
		return s, err
	}
	if o.diffID == "" {
		s.pending = h
		return s, nil
	}
	if s.diffID, err = h.wait(); err != nil {
		return s, err
	}
	return s, checkDiffID(s.diffID, o)
}

func checkDiffID(d digest.Digest, o options) error {
	if o.diffID != "" && o.diffID != d {
		return invalid("layer DiffID is %s, not the expected %s: the layer is corrupt, truncated or not the one the image names", d, o.diffID)
	}
	return nil
}

// walk reads the layer's headers from r, checks each against the model
// of root, and checks the end-of-archive marker; at says how many bytes
// of the tar r has given. With skip, the content of regular files is
// passed over (r is seekable), otherwise read and dropped.
func walk(ctx context.Context, r io.Reader, at func() int64, skip bool, root string, o options) (scanned, error) {
	m := newModel(root, o)
	tr := tar.NewReader(r)
	var s scanned
	type file struct {
		i    int
		real string
	}
	var files []file
	buf := make([]byte, 32<<10)
	end := at() // content (and its padding) ends here; Next reads the rest
	for {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if err := checkEnd(end, at()); err != nil {
				return s, err
			}
			break
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags unsafe names
		// itself; the model then says which rule they break.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return s, notTar(err, at())
		}
		if err := m.check(hdr); err != nil {
			return s, err
		}
		regular := isRegular(hdr) && !isSparse(hdr)
		if regular && m.last != "" {
			files = append(files, file{len(s.prints), m.last})
		}
		s.prints = append(s.prints, fingerprint(hdr))
		if skip && regular {
			end = at() + hdr.Size // Next seeks over it
			continue
		}
		// Reading the content (rather than letting Next skip it) puts the
		// reader at its end, which checkEnd needs. A sparse file's holes
		// come out as zeros: bounded by the budget checked just above.
		if _, err := io.CopyBuffer(io.Discard, tr, buf); err != nil {
			return s, notTar(err, at())
		}
		end = at()
	}
	s.opaque = m.opaque
	s.solo = make([]bool, len(s.prints))
	for _, f := range files {
		s.solo[f.i] = m.uses[f.real] == 1
	}
	return s, nil
}

// checkEnd checks that the bytes the tar reader consumed to find the end
// (from end to at) were padding and the two zero blocks of the
// end-of-archive marker. archive/tar reports a clean EOF for a tar cut at
// a block boundary, which would apply the entries before the cut as a
// whole layer.
func checkEnd(end, at int64) error {
	pad := (blockSize - end%blockSize) % blockSize
	if at == 0 {
		return invalid("layer is empty: not a tar (no end-of-archive marker)")
	}
	if zero := (at - end - pad) / blockSize; zero < 2 {
		return invalid("layer is truncated: it ends after %d bytes without the end-of-archive marker (two zero blocks)", at)
	}
	return nil
}

// notTar turns a tar reader error into an ErrInvalidArgument error.
func notTar(err error, at int64) error {
	if errors.Is(err, drivers.ErrInvalidArgument) {
		return err
	}
	if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrFieldTooLong) {
		return fmt.Errorf("layer is not a valid tar (%v near byte %d): %w", err, at, drivers.ErrInvalidArgument)
	}
	return fmt.Errorf("read layer: %w", err)
}

// fingerprint sums what the second pass acts on, so it can refuse a
// seekable input that changed between the passes.
func fingerprint(hdr *tar.Header) uint64 {
	h := fnv.New64a()
	for _, s := range []string{hdr.Name, hdr.Linkname, string(hdr.Typeflag),
		strconv.FormatInt(hdr.Size, 10), strconv.FormatInt(hdr.Mode, 8),
		strconv.Itoa(hdr.Uid), strconv.Itoa(hdr.Gid),
		strconv.FormatInt(hdr.Devmajor, 10), strconv.FormatInt(hdr.Devminor, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if len(hdr.PAXRecords) > 0 {
		keys := make([]string, 0, len(hdr.PAXRecords))
		for k := range hdr.PAXRecords {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			h.Write([]byte(k))
			h.Write([]byte{0})
			h.Write([]byte(hdr.PAXRecords[k]))
			h.Write([]byte{0})
		}
	}
	return h.Sum64()
}
