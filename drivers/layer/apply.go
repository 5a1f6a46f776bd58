package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"golang.org/x/sys/unix"
)

// Apply unpacks the layer tar r, uncompressed or gzip or zstd compressed,
// into dir, the mounted view of a prepared snapshot, and says how much it
// applied and the layer's DiffID. See the package comment for what a
// failed Apply leaves behind.
//
// The first pass reads the whole layer before anything is written, so a
// refused layer leaves dir exactly as it was: an unsafe entry may come
// last, after thousands of good ones. It hashes every byte for the DiffID
// (an expected one, WithDiffID, is checked before anything is written),
// requires the end-of-archive marker (a tar cut at a block boundary is
// otherwise indistinguishable from a short one), counts the bytes and
// entries against the budget (WithBudget), and checks every header against
// a model of the snapshot as the layer changes it. A seekable,
// uncompressed r that is also an io.ReaderAt (an *os.File, a bytes.Reader)
// is read in place: the first pass reads its headers and skips the
// contents while another goroutine hashes it (with no expected DiffID the
// hashing goes on during the second pass, and a read error then is
// ErrUnusable); the second pass refuses any header that differs from the
// first pass's (content is not hashed twice: a caller that rewrites its
// own file during Apply gets what it wrote). Anything else is
// decompressed once into an unlinked temporary file (see WithTempDir) that
// both passes read. From a file (the input or that spool), the second
// pass writes independent regular files on several goroutines, see
// pool.go.
//
// Refused (an *EntryError naming the entry and the rule, wrapping
// drivers.ErrInvalidArgument): names that are absolute or climb out with
// "..", hardlinks whose target is absolute, climbs out, is missing, is a
// directory or is the link itself, relative symlinks with ".." after a
// path component or more leading ".." than their directory is deep,
// absolute symlinks under AllowAbsoluteSymlinks(false), device nodes
// (unless AllowDevices), entries under a symlink the same layer created or
// under a file, whiteouts of the layer's own entries, xattrs the kernel
// would refuse, unknown entry types, and a layer past its budget. The
// layer as a whole (wrapping drivers.ErrInvalidArgument): not a tar,
// truncated, compressed with anything but gzip or zstd, or a DiffID other
// than the expected one. Symlinks the snapshot already holds (from parent
// layers) are resolved inside dir, never outside it; no symlink is ever
// followed to write.
func Apply(ctx context.Context, dir string, r io.Reader, opts ...Option) (Stats, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkDir("apply layer: target", dir); err != nil {
		return Stats{}, err
	}
	if o.budget == nil {
		b, err := freeBudget(dir)
		if err != nil {
			return Stats{}, err
		}
		o.budget = &b
	}
	src, s, done, err := firstPass(ctx, r, dir, o)
	if err != nil {
		return Stats{}, err
	}
	defer done()
	if s.pending != nil {
		defer s.pending.stop() // no goroutine outlives Apply
	}
	a := newApplier(ctx, dir, o, s)
	if a.rootfd, err = openRoot(a.root); err != nil {
		return Stats{}, fmt.Errorf("apply layer: %w", err)
	}
	defer a.rootfd.close()
	if err := a.apply(src); err != nil {
		if a.touched {
			return a.st, fmt.Errorf("apply layer to %s: %w (%w)", dir, err, ErrUnusable)
		}
		return a.st, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	if s.pending != nil {
		if a.s.diffID, err = s.pending.wait(); err != nil {
			return a.st, fmt.Errorf("apply layer to %s: %w (%w)", dir, err, ErrUnusable)
		}
	}
	a.st.DiffID = a.s.diffID
	return a.st, nil
}

// freeBudget is the default budget: what statfs says dir can still take.
func freeBudget(dir string) (Budget, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Budget{}, fmt.Errorf("apply layer: statfs %s: %w", dir, err)
	}
	b := Budget{Bytes: int64(st.Bavail) * st.Bsize}
	if st.Files > 0 { // btrfs and others report no inode limit as 0
		b.Inodes = int64(st.Ffree)
	}
	if b.Bytes == 0 {
		b.Bytes = 1 // a full filesystem takes no file content at all
	}
	return b, nil
}

// firstPass runs scan and returns a reader of the uncompressed tar,
// positioned at its start, what scan learned, and a function that
// releases the reader.
func firstPass(ctx context.Context, r io.Reader, dir string, o options) (io.Reader, scanned, func(), error) {
	br := &peekReader{r: r}
	magic, err := br.peek(10)
	if err != nil {
		return nil, scanned{}, nil, fmt.Errorf("read layer: %w", err)
	}
	if name := unsupported(magic); name != "" {
		return nil, scanned{}, nil, invalid("unsupported compression: %s (a layer is an uncompressed, gzip or zstd tar)", name)
	}
	plain := compression.DetectCompression(magic) == compression.Uncompressed
	if rs, ok := r.(io.ReadSeeker); ok && plain {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			var s scanned
			if ra, ok := r.(io.ReaderAt); ok {
				s, err = scanInPlace(ctx, rs, ra, start, dir, o)
			} else {
				s, err = scan(ctx, rs, dir, o, nil)
			}
			if err != nil {
				return nil, s, nil, err
			}
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return nil, s, nil, fmt.Errorf("rewind layer: %w", err)
			}
			return rs, s, func() {}, nil
		}
	}

	dec, err := compression.DecompressStream(br.reader())
	if err != nil {
		return nil, scanned{}, nil, invalid("layer does not decompress: %v", err)
	}
	defer dec.Close()
	spool, err := os.CreateTemp(o.tempDir, "layerlab-layer-*.tar")
	if err != nil {
		return nil, scanned{}, nil, fmt.Errorf("spool layer: %w", err)
	}
	// Unlinked at once: nothing is left behind, whatever happens next.
	_ = os.Remove(spool.Name())
	release := func() { spool.Close() }
	var in io.Reader = dec
	if !plain {
		in = &decodeReader{r: dec}
	}
	s, err := scan(ctx, in, dir, o, spool)
	if err != nil {
		release()
		return nil, s, nil, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		release()
		return nil, s, nil, fmt.Errorf("rewind spooled layer: %w", err)
	}
	return spool, s, release, nil
}

// decodeReader marks the decompressor's errors (a corrupt or cut gzip or
// zstd stream) as the layer's fault.
type decodeReader struct{ r io.Reader }

func (d *decodeReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = invalid("layer does not decompress: %v", err)
	}
	return n, err
}

// unsupported names the compression of magic when it is one a layer may
// not use; "" otherwise.
func unsupported(magic []byte) string {
	for _, c := range []struct {
		name  string
		magic []byte
	}{
		{"bzip2", []byte("BZh")},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
		{"lz4", []byte{0x04, 0x22, 0x4d, 0x18}},
		{"compress (.Z)", []byte{0x1f, 0x9d}},
		{"lzip", []byte("LZIP")},
	} {
		if bytes.HasPrefix(magic, c.magic) {
			return c.name
		}
	}
	return ""
}

// peekReader reads the first bytes of r without losing them.
type peekReader struct {
	r    io.Reader
	head []byte
}

// peek returns up to n first bytes. A seekable r is rewound instead of
// buffered, so it stays seekable for the first pass.
func (p *peekReader) peek(n int) ([]byte, error) {
	buf := make([]byte, n)
	if rs, ok := p.r.(io.ReadSeeker); ok {
		if start, err := rs.Seek(0, io.SeekCurrent); err == nil {
			got, err := io.ReadFull(rs, buf)
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, err
			}
			_, err = rs.Seek(start, io.SeekStart)
			return buf[:got], err
		}
	}
	got, err := io.ReadFull(p.r, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, err
	}
	p.head = buf[:got]
	return p.head, nil
}

// reader returns r with the peeked bytes in front again.
func (p *peekReader) reader() io.Reader {
	if len(p.head) == 0 {
		return p.r
	}
	return io.MultiReader(bytes.NewReader(p.head), p.r)
}
