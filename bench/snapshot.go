package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// Helpers the workloads share to drive a target's snapshots.

// dir returns a fresh mount point for key.
func (t *target) dir(key string) (string, error) {
	d := filepath.Join(t.work, fmt.Sprintf("m%d", t.n))
	return d, os.MkdirAll(d, 0o755)
}

// layer prepares a child of parent, lets write fill it, and commits it.
func (t *target) layer(ctx context.Context, parent string, write func(dir string) error) (string, error) {
	key := t.key("layer")
	ms, err := t.d.Prepare(ctx, key, parent)
	if err != nil {
		return "", err
	}
	dir, err := t.dir(key)
	if err != nil {
		return "", err
	}
	if err := mount.All(ms, dir); err != nil {
		return "", err
	}
	werr := write(dir)
	if err := mount.UnmountAll(dir); err != nil {
		return "", err
	}
	os.Remove(dir)
	if werr != nil {
		return "", werr
	}
	name := key + "-c"
	return name, t.d.Commit(ctx, name, key)
}

// child is a mounted active snapshot; release unmounts and removes it.
type child struct {
	key, dir string
	t        *target
}

func (t *target) child(ctx context.Context, parent string, opts ...drivers.Opt) (*child, error) {
	key := t.key("child")
	ms, err := t.d.Prepare(ctx, key, parent, opts...)
	if err != nil {
		return nil, err
	}
	dir, err := t.dir(key)
	if err != nil {
		return nil, err
	}
	if err := mount.All(ms, dir); err != nil {
		t.d.Remove(ctx, key)
		return nil, err
	}
	return &child{key: key, dir: dir, t: t}, nil
}

func (c *child) release(ctx context.Context) error {
	if err := mount.UnmountAll(c.dir); err != nil {
		return err
	}
	os.Remove(c.dir)
	return c.t.d.Remove(ctx, c.key)
}

// writeFile writes n bytes of incompressible data (so zfs compression
// cannot shrink it) and syncs it.
func writeFile(path string, n int64, seed int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := pattern(1<<20, seed)
	for left := n; left > 0; {
		w := int64(len(chunk))
		if left < w {
			w = left
		}
		if _, err := f.Write(chunk[:w]); err != nil {
			return err
		}
		left -= w
	}
	return f.Sync()
}

// pattern is n pseudo-random bytes from a fast generator (xorshift), the
// same for the same seed.
func pattern(n int, seed int64) []byte {
	b := make([]byte, n)
	x := uint64(seed)*2654435761 + 88172645463325252
	for i := 0; i+8 <= n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := 0; j < 8; j++ {
			b[i+j] = byte(x >> (8 * j))
		}
	}
	return b
}
