package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/archive/tarheader"
	"github.com/containerd/continuity/sysx"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Digests identify a layer written by Diff.
type Digests struct {
	DiffID digest.Digest // sha256 of the uncompressed tar (rootfs.diff_ids)
	Digest digest.Digest // sha256 of the bytes written (the blob's digest)
	Size   int64         // bytes written
}

// DiffOption changes how Diff writes the layer.
type DiffOption func(*diffOptions)

type diffOptions struct {
	compression compression.Compression
	filter      func(io.Writer) io.WriteCloser
}

// WithTarFilter passes the layer's tar through filter before it is
// digested and compressed: filter(w) returns the writer the diff writes
// its tar into, which writes the tar the layer holds to w; its Close ends
// that tar and says whether the filter failed. The layer's digests are
// those of the filtered tar. A runtime uses it to keep out what its
// containers' mountpoints left in a snapshot.
func WithTarFilter(filter func(w io.Writer) io.WriteCloser) DiffOption {
	return func(o *diffOptions) { o.filter = filter }
}

// WithCompression compresses the layer Diff writes: compression.Gzip or
// compression.Zstd (compression.Uncompressed is the default).
func WithCompression(c compression.Compression) DiffOption {
	return func(o *diffOptions) { o.compression = c }
}

// Diff writes to w the layer tar of the changes from lower, the mounted
// view of the parent, to upper, the mounted view of the snapshot; an empty
// lower means no parent, so every file of upper is added. It works for
// every driver because it compares the two trees (continuity's
// fs.Changes via containerd's archive.WriteDiff); deletions become ".wh."
// entries, and a directory that was deleted and made again shows up as
// whiteouts of each old child rather than as an opaque marker. It returns
// the layer's DiffID and the digest and size of what it wrote.
func Diff(ctx context.Context, w io.Writer, lower, upper string, opts ...DiffOption) (Digests, error) {
	if lower != "" {
		if err := checkDir("diff: lower", lower); err != nil {
			return Digests{}, err
		}
	}
	if err := checkDir("diff: upper", upper); err != nil {
		return Digests{}, err
	}
	d, err := writeLayer(w, opts, func(tw io.Writer) error { return archive.WriteDiff(ctx, tw, lower, upper) })
	if err != nil {
		return Digests{}, fmt.Errorf("diff %s against %s: %w", upper, lower, err)
	}
	return d, nil
}

// writeLayer runs write with a writer that compresses as opts say into w,
// and returns the digests of the tar write wrote and of the blob.
func writeLayer(w io.Writer, opts []DiffOption, write func(io.Writer) error) (Digests, error) {
	lw, err := newLayerWriter(w, opts)
	if err != nil {
		return Digests{}, err
	}
	if err := write(lw.in); err != nil {
		lw.abort()
		return Digests{}, err
	}
	return lw.finish()
}

// layerWriter takes a layer's tar (in: through the filter, if any),
// compresses it as the options say into w, and digests both forms.
// Nothing reaches w before the first Write.
type layerWriter struct {
	blob, plain *digestWriter
	cw          io.WriteCloser
	in          io.Writer
	filter      io.WriteCloser // nil without one
}

func newLayerWriter(w io.Writer, opts []DiffOption) (*layerWriter, error) {
	var o diffOptions
	for _, opt := range opts {
		opt(&o)
	}
	blob := &digestWriter{w: w, d: digest.SHA256.Digester()}
	cw, err := compression.CompressStream(blob, o.compression)
	if err != nil {
		return nil, fmt.Errorf("diff: compression %v: %w: %w", o.compression, drivers.ErrInvalidArgument, err)
	}
	lw := &layerWriter{blob: blob, plain: &digestWriter{w: cw, d: digest.SHA256.Digester()}, cw: cw}
	lw.in = lw.plain
	if o.filter != nil {
		lw.filter = o.filter(lw.plain)
		lw.in = lw.filter
	}
	return lw, nil
}

// finish ends the filter and the compressed stream and returns the
// digests.
func (l *layerWriter) finish() (Digests, error) {
	if l.filter != nil {
		if err := l.filter.Close(); err != nil {
			return Digests{}, fmt.Errorf("diff: tar filter: %w", err)
		}
	}
	if err := l.cw.Close(); err != nil {
		return Digests{}, err
	}
	return Digests{DiffID: l.plain.d.Digest(), Digest: l.blob.d.Digest(), Size: l.blob.n}, nil
}

// abort ends a filter after the diff failed, so its goroutine (if any)
// ends too; the layer is not used.
func (l *layerWriter) abort() {
	if l.filter != nil {
		_ = l.filter.Close()
	}
}

// digestWriter hashes and counts what passes through to w.
type digestWriter struct {
	w io.Writer
	d digest.Digester
	n int64
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.d.Hash().Write(p[:n])
	d.n += int64(n)
	return n, err
}

// Overlay's private extended attributes. With the userxattr mount option
// the kernel uses the user.overlay. namespace instead of trusted.overlay.
var overlayXattrPrefixes = []string{"trusted.overlay.", "user.overlay."}

func overlayXattr(dir, name string) ([]byte, error) {
	for _, p := range overlayXattrPrefixes {
		v, err := sysx.LGetxattr(dir, p+name)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
			return nil, fmt.Errorf("read %s%s of %s: %w", p, name, dir, err)
		}
	}
	return nil, nil
}

// DiffOverlayUpper writes to w the layer tar of an overlay upper directory
// (overlay2's snapshots/<id>/fs) without mounting anything or comparing
// trees: the upper directory already is the change set. Entries go as they
// are; whiteouts (character devices 0/0, or files marked
// trusted.overlay.whiteout) become ".wh.<name>"; directories marked
// trusted.overlay.opaque=y get a ".wh..wh..opq" entry; overlay's own
// xattrs are left out. lowers, topmost first, are read only for the data of
// metacopy files (upper holds their metadata only). Directories renamed
// with redirect_dir are refused with drivers.ErrNotImplemented: their
// contents live in the lowers under another name; use Diff on the mounted
// view for those.
func DiffOverlayUpper(ctx context.Context, w io.Writer, upperDir string, lowers []string) error {
	if err := checkDir("diff overlay upper", upperDir); err != nil {
		return err
	}
	d := &upperDiff{ctx: ctx, tw: tar.NewWriter(w), upper: upperDir, lowers: lowers, inodes: map[fileID]string{}}
	if err := filepath.WalkDir(upperDir, d.visit); err != nil {
		return fmt.Errorf("diff overlay upper %s: %w", upperDir, err)
	}
	if err := d.tw.Close(); err != nil {
		return fmt.Errorf("diff overlay upper %s: %w", upperDir, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

type upperDiff struct {
	ctx    context.Context
	tw     *tar.Writer
	upper  string
	lowers []string
	inodes map[fileID]string // first name written for each hardlinked inode
}

// whiteoutTime is what containerd (since v2.0) stamps on whiteouts, so
// both diffs give identical whiteout headers.
var whiteoutTime = time.Unix(0, 0).UTC()

func (d *upperDiff) visit(p string, _ fs.DirEntry, err error) error {
	if err != nil {
		return err
	}
	if err := d.ctx.Err(); err != nil {
		return err
	}
	rel, err := filepath.Rel(d.upper, p)
	if err != nil || rel == "." {
		return err
	}
	name := filepath.ToSlash(rel)
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no stat data", p)
	}
	mode := fi.Mode()
	switch {
	case mode&os.ModeSocket != 0:
		return nil // sockets are not layer content (containerd skips them too)
	case mode&os.ModeCharDevice != 0 && st.Rdev == 0:
		return d.whiteout(path.Join(path.Dir(name), whiteoutPrefix+path.Base(name)))
	case mode.IsRegular() && fi.Size() == 0:
		if v, err := overlayXattr(p, "whiteout"); err != nil || v != nil {
			if err != nil {
				return err
			}
			return d.whiteout(path.Join(path.Dir(name), whiteoutPrefix+path.Base(name)))
		}
	}

	var link string
	if mode&os.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return err
		}
	}
	hdr, err := tarheader.FileInfoHeaderNoLookups(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	// The same normalisation containerd's ChangeWriter applies.
	hdr.Name = name
	hdr.Format = tar.FormatPAX
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if err := d.xattrs(p, hdr); err != nil {
		return err
	}

	if fi.IsDir() {
		return d.dir(p, hdr)
	}
	if id := (fileID{uint64(st.Dev), st.Ino}); st.Nlink > 1 {
		if first, ok := d.inodes[id]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			hdr.PAXRecords = nil // the inode got its xattrs with the first name
			return d.tw.WriteHeader(hdr)
		}
		d.inodes[id] = name
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
		return nil
	}
	data, err := d.dataOf(p, name)
	if err != nil {
		return err
	}
	f, err := os.Open(data)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(d.tw, io.LimitReader(f, hdr.Size))
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("%s shrank from %d to %d bytes while being read", data, hdr.Size, n)
	}
	return err
}

func (d *upperDiff) dir(p string, hdr *tar.Header) error {
	redirect, err := overlayXattr(p, "redirect")
	if err != nil {
		return err
	}
	if redirect != nil {
		return fmt.Errorf("%s was renamed from %q with redirect_dir; its contents live in the lower layers: %w (use Diff on the mounted view)", p, redirect, drivers.ErrNotImplemented)
	}
	hdr.Name += "/"
	if err := d.tw.WriteHeader(hdr); err != nil {
		return err
	}
	// "y" hides the lowers; kernels since 6.7 also write "x", which only
	// says the directory holds xattr whiteouts.
	opaque, err := overlayXattr(p, "opaque")
	if err != nil {
		return err
	}
	if string(opaque) == "y" {
		return d.whiteout(hdr.Name + whiteoutOpaque)
	}
	return nil
}

// whiteout writes the header containerd's ChangeWriter writes for a
// deletion.
func (d *upperDiff) whiteout(name string) error {
	return d.tw.WriteHeader(&tar.Header{
		Typeflag:   tar.TypeReg,
		Name:       name,
		ModTime:    whiteoutTime,
		AccessTime: whiteoutTime,
		ChangeTime: whiteoutTime,
	})
}

// xattrs copies the extended attributes of p into hdr, leaving out
// overlay's bookkeeping and SELinux labels (a host policy, not content).
func (d *upperDiff) xattrs(p string, hdr *tar.Header) error {
	keys, err := sysx.LListxattr(p)
	if errors.Is(err, unix.ENOTSUP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	for _, k := range keys {
		if k == "security.selinux" || hasAnyPrefix(k, overlayXattrPrefixes) {
			continue
		}
		v, err := sysx.LGetxattr(p, k)
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read xattr %s of %s: %w", k, p, err)
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
	return nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// dataOf returns the file holding the data of the upper file p. A metacopy
// file (metacopy=on) holds metadata only; its data is in the topmost lower
// that has the file under its redirect name (or its own name) and is not
// itself a metacopy.
func (d *upperDiff) dataOf(p, name string) (string, error) {
	meta, err := overlayXattr(p, "metacopy")
	if err != nil || meta == nil {
		return p, err
	}
	want := "/" + name
	redirect, err := overlayXattr(p, "redirect")
	if err != nil {
		return "", err
	}
	if redirect != nil {
		want = redirectPath(want, string(redirect))
	}
	for _, lower := range d.lowers {
		candidate := filepath.Join(lower, filepath.FromSlash(want))
		fi, err := os.Lstat(candidate)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		meta, err := overlayXattr(candidate, "metacopy")
		if err != nil {
			return "", err
		}
		if meta == nil {
			return candidate, nil
		}
		if redirect, err := overlayXattr(candidate, "redirect"); err != nil {
			return "", err
		} else if redirect != nil {
			want = redirectPath(want, string(redirect))
		}
	}
	return "", fmt.Errorf("%s is a metacopy file and none of the %d lowers holds its data (%s): %w", p, len(d.lowers), want, drivers.ErrNotFound)
}

// redirectPath applies an overlay redirect: absolute redirects name a path
// from the layer root, relative ones a name in the same directory.
func redirectPath(current, redirect string) string {
	if strings.HasPrefix(redirect, "/") {
		return path.Clean(redirect)
	}
	return path.Join(path.Dir(current), redirect)
}
