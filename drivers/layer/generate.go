package layer

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"time"

	"github.com/containerd/containerd/v2/pkg/archive/compression"

	"github.com/layerlab/layerlab/drivers"
)

// Spec describes a synthetic layer for Generate.
type Spec struct {
	Files     int   // regular files
	FileSize  int64 // bytes in each file
	Dirs      int   // directories the files are spread over; 0 puts them in the root
	Symlinks  int   // relative symlinks, each to a generated file
	Hardlinks int   // hardlinks, each to a generated file
	// Whiteouts are paths (relative to the root) the layer deletes from the
	// layers below, written as ".wh.<name>" entries.
	Whiteouts []string
	// Opaque are directories whose lower contents the layer hides, written
	// as "<dir>/.wh..wh..opq" entries.
	Opaque []string
	// Compression of the output: compression.Uncompressed (the zero
	// value), compression.Gzip or compression.Zstd.
	Compression compression.Compression
}

// GenerateTime is the modification time of every generated entry.
func GenerateTime() time.Time { return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC) }

// alphabet for file content: 16 letters, so content compresses about 2:1
// under gzip, closer to real layers than random bytes (which gzip stores).
const alphabet = "etaoinshrdlucmfw"

// Generate writes the layer spec describes to w. The same seed and spec
// give the same bytes: names, sizes and times are fixed and the content and
// placement come from a PCG generator seeded with seed.
//
// Layout: directories d0000, d0001, ... where directory i > 0 lies in
// directory (i-1)/4, so the tree is a few levels deep; file k is
// f000000k in a directory picked by the generator; symlinks sNNNNNN and
// hardlinks hNNNNNN sit next to the file they name. Whiteouts and opaque
// markers come last.
func Generate(w io.Writer, seed int64, spec Spec) error {
	if err := spec.check(); err != nil {
		return err
	}
	cw, err := compression.CompressStream(w, spec.Compression)
	if err != nil {
		return fmt.Errorf("generate layer: %w: %w", drivers.ErrInvalidArgument, err)
	}
	bw := bufio.NewWriterSize(cw, 64<<10)
	g := &generator{
		rng: rand.New(rand.NewPCG(uint64(seed), 0x6c617965726c6162)), // "layerlab"
		tw:  tar.NewWriter(bw),
	}
	if err := g.layer(spec); err != nil {
		return fmt.Errorf("generate layer: %w", err)
	}
	if err := g.tw.Close(); err != nil {
		return fmt.Errorf("generate layer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("generate layer: %w", err)
	}
	if err := cw.Close(); err != nil {
		return fmt.Errorf("generate layer: %w", err)
	}
	return nil
}

func (s Spec) check() error {
	if s.Files < 0 || s.FileSize < 0 || s.Dirs < 0 || s.Symlinks < 0 || s.Hardlinks < 0 {
		return fmt.Errorf("generate layer: negative count in spec %+v: %w", s, drivers.ErrInvalidArgument)
	}
	if (s.Symlinks > 0 || s.Hardlinks > 0) && s.Files == 0 {
		return fmt.Errorf("generate layer: symlinks and hardlinks need files to point at: %w", drivers.ErrInvalidArgument)
	}
	for _, p := range append(append([]string{}, s.Whiteouts...), s.Opaque...) {
		if err := checkHeader(&tar.Header{Name: p, Typeflag: tar.TypeReg}, options{}); err != nil || path.Clean(p) == "." {
			return fmt.Errorf("generate layer: whiteout or opaque path %q must name a file or directory below the root: %w", p, drivers.ErrInvalidArgument)
		}
	}
	return nil
}

type generator struct {
	rng *rand.Rand
	tw  *tar.Writer
	buf [64 << 10]byte
}

func (g *generator) layer(spec Spec) error {
	dirs := make([]string, spec.Dirs)
	for i := range dirs {
		dirs[i] = fmt.Sprintf("d%04d", i)
		if i > 0 {
			dirs[i] = dirs[(i-1)/4] + "/" + dirs[i]
		}
		if err := g.header(tar.TypeDir, dirs[i]+"/", 0o755, 0, ""); err != nil {
			return err
		}
	}
	files := make([]string, spec.Files)
	for k := range files {
		files[k] = fmt.Sprintf("f%07d", k)
		if len(dirs) > 0 {
			files[k] = dirs[g.rng.IntN(len(dirs))] + "/" + files[k]
		}
		if err := g.header(tar.TypeReg, files[k], 0o644, spec.FileSize, ""); err != nil {
			return err
		}
		if err := g.content(spec.FileSize); err != nil {
			return err
		}
	}
	for k := 0; k < spec.Symlinks; k++ {
		target := files[g.rng.IntN(len(files))]
		name := path.Join(path.Dir(target), fmt.Sprintf("s%07d", k))
		if err := g.header(tar.TypeSymlink, name, 0o777, 0, path.Base(target)); err != nil {
			return err
		}
	}
	for k := 0; k < spec.Hardlinks; k++ {
		target := files[g.rng.IntN(len(files))]
		name := path.Join(path.Dir(target), fmt.Sprintf("h%07d", k))
		if err := g.header(tar.TypeLink, name, 0o644, 0, target); err != nil {
			return err
		}
	}
	for _, p := range spec.Whiteouts {
		p = path.Clean(p)
		if err := g.header(tar.TypeReg, path.Join(path.Dir(p), whiteoutPrefix+path.Base(p)), 0o644, 0, ""); err != nil {
			return err
		}
	}
	for _, p := range spec.Opaque {
		if err := g.header(tar.TypeReg, path.Join(path.Clean(p), whiteoutOpaque), 0o644, 0, ""); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) header(typ byte, name string, mode, size int64, link string) error {
	return g.tw.WriteHeader(&tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: link,
		Mode:     mode,
		Size:     size,
		ModTime:  GenerateTime(),
		Format:   tar.FormatPAX, // what containerd writes; fixed so the bytes are too
	})
}

// content writes size bytes drawn from alphabet, 16 letters per rng word.
func (g *generator) content(size int64) error {
	for size > 0 {
		n := int64(len(g.buf))
		if size < n {
			n = size
		}
		for i := int64(0); i < n; i += 16 {
			x := g.rng.Uint64()
			for j := i; j < i+16 && j < n; j++ {
				g.buf[j] = alphabet[x&15]
				x >>= 4
			}
		}
		if _, err := g.tw.Write(g.buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}
