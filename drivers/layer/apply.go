package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"

	"github.com/layerlab/layerlab/drivers"
)

// Apply unpacks the layer tar r, optionally gzip or zstd compressed, into
// dir, the mounted view of a prepared snapshot, and says how much it
// applied.
//
// Validation is a first pass over the whole layer before anything is
// written, so a refused layer leaves dir exactly as it was: an unsafe entry
// may come last, after thousands of good ones, and a streaming check would
// have applied those. The price is reading the layer twice. A seekable,
// uncompressed r (an *os.File, a bytes.Reader) is checked in place and
// rewound; anything else is decompressed once into an unlinked temporary
// file (see WithTempDir) that both passes read, so the bytes checked are
// the bytes applied.
//
// The second pass is containerd's archive.Apply, which resolves every
// parent path inside dir (fs.RootPath), replaces rather than follows a
// symlink at an entry's own name, and links rather than follows a symlink
// a hardlink names. Its filter runs the same checks again on the bytes it
// reads: a seekable input that someone changes between the passes is
// still refused at the bad entry (the all-or-nothing guarantee then holds
// only for the spooled path, whose file nobody else can reach), and
// containerd's habit of clamping ".." to the root instead of refusing it
// never comes into play.
//
// Refused: names that are absolute or climb out with "..", hardlinks whose
// target is absolute or climbs out, symlinks whose target is absolute
// (unless AllowAbsoluteSymlinks) or climbs out from the link's directory,
// device nodes (unless AllowDevices), entries under a symlink the same
// layer created, and unknown entry types. The error is an *EntryError that
// names the entry and the rule and wraps drivers.ErrInvalidArgument.
// Symlinks the snapshot already holds (from parent layers) are resolved
// inside dir, never outside it.
func Apply(ctx context.Context, dir string, r io.Reader, opts ...Option) (Stats, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := checkDir("apply layer: target", dir); err != nil {
		return Stats{}, err
	}
	src, done, err := validated(ctx, r, o)
	if err != nil {
		return Stats{}, err
	}
	defer done()

	var st Stats
	recheck := newValidator(o)
	filter := func(hdr *tar.Header) (bool, error) {
		if err := recheck.check(hdr); err != nil {
			return false, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			return false, nil // containerd would Lstat and mkparent its name first
		}
		st.Entries++
		if isWhiteout(hdr.Name) {
			st.Whiteouts++
		} else if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA { //nolint:staticcheck // old layers use TypeRegA
			st.Bytes += hdr.Size
		}
		return true, nil
	}
	if _, err := archive.Apply(ctx, dir, src, archive.WithFilter(filter)); err != nil {
		return st, fmt.Errorf("apply layer to %s: %w", dir, err)
	}
	return st, nil
}

// validated runs the first pass and returns a reader of the uncompressed
// tar, positioned at its start, and a function that releases it.
func validated(ctx context.Context, r io.Reader, o options) (io.Reader, func(), error) {
	if rs, ok := r.(io.ReadSeeker); ok {
		plain, err := uncompressed(rs)
		if err != nil {
			return nil, nil, err
		}
		if plain {
			start, err := rs.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, nil, fmt.Errorf("read layer: %w", err)
			}
			if err := scan(ctx, rs, o); err != nil {
				return nil, nil, err
			}
			if _, err := rs.Seek(start, io.SeekStart); err != nil {
				return nil, nil, fmt.Errorf("rewind layer: %w", err)
			}
			return rs, func() {}, nil
		}
	}

	dec, err := compression.DecompressStream(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read layer: %w", err)
	}
	defer dec.Close()
	spool, err := os.CreateTemp(o.tempDir, "layerlab-layer-*.tar")
	if err != nil {
		return nil, nil, fmt.Errorf("spool layer: %w", err)
	}
	// Unlinked at once: nothing is left behind, whatever happens next.
	_ = os.Remove(spool.Name())
	release := func() { spool.Close() }
	if err := scan(ctx, io.TeeReader(dec, spool), o); err != nil {
		release()
		return nil, nil, err
	}
	// Reading to the end makes the gzip and zstd readers verify their
	// checksums; what follows the tar's end marker is not needed.
	if _, err := io.Copy(io.Discard, dec); err != nil {
		release()
		return nil, nil, fmt.Errorf("decompress layer: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		release()
		return nil, nil, fmt.Errorf("rewind spooled layer: %w", err)
	}
	return spool, release, nil
}

// uncompressed peeks at the magic number of rs and seeks back.
func uncompressed(rs io.ReadSeeker) (bool, error) {
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return false, nil // not really seekable: take the spooling path
	}
	magic := make([]byte, 10)
	n, err := io.ReadFull(rs, magic)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return false, fmt.Errorf("read layer: %w", err)
	}
	if _, err := rs.Seek(start, io.SeekStart); err != nil {
		return false, fmt.Errorf("rewind layer: %w", err)
	}
	return compression.DetectCompression(magic[:n]) == compression.Uncompressed, nil
}

// scan is the first pass: it reads every header of the tar in r and checks
// it. Content is skipped (by seeking, when r can).
func scan(ctx context.Context, r io.Reader, o options) error {
	v := newValidator(o)
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags unsafe names
		// itself; the validator then says which rule they break.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("layer is not a valid tar (%v): %w", err, drivers.ErrInvalidArgument)
			}
			return fmt.Errorf("read layer: %w", err)
		}
		if err := v.check(hdr); err != nil {
			return err
		}
	}
}
