package bench

import (
	"bytes"
	"context"
	"fmt"

	"github.com/layerlab/layerlab/drivers/layer"
)

// image is the generated N-layer image the unpack workload applies. It is
// made once per run from a fixed seed, so every driver unpacks the same
// bytes.
func (r *run) image(seed int64) ([][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.layers != nil {
		return r.layers, nil
	}
	spec := r.prof.Unpack
	for i := 0; i < spec.Layers; i++ {
		s := layer.Spec{Files: spec.FilesPerLayer, FileSize: spec.FileSize, Dirs: max(spec.FilesPerLayer/10, 1), Symlinks: 2, Hardlinks: 2}
		if i > 0 {
			s.Opaque = []string{"d0001"} // each layer hides its parent's d0001
		}
		var buf bytes.Buffer
		if err := layer.Generate(&buf, seed+int64(i), s); err != nil {
			return nil, fmt.Errorf("generate layer %d: %w", i, err)
		}
		r.layers = append(r.layers, buf.Bytes())
	}
	return r.layers, nil
}

// unpack applies the generated image into a chain of snapshots (prepare,
// mount, apply the layer tar with its whiteouts, unmount, commit, for
// every layer) and times the whole image; the chain is then removed.
func unpack(ctx context.Context, r *run, t *target) error {
	layers, err := r.image(r.seed)
	if err != nil {
		return err
	}
	pt := point{Workload: "unpack", Op: "unpack-image", Target: t.info.ID, Param: "layers", Value: float64(len(layers))}
	for i := 0; i < r.prof.Warmup+max(r.prof.N/2, 3); i++ {
		var chain []string
		err := r.recorderFor(i).time(pt, func() error {
			parent := ""
			for _, tar := range layers {
				name, err := t.layer(ctx, parent, func(dir string) error {
					_, err := layer.Apply(ctx, dir, bytes.NewReader(tar))
					return err
				})
				if err != nil {
					return err
				}
				chain = append(chain, name)
				parent = name
			}
			return nil
		})
		for j := len(chain) - 1; j >= 0; j-- {
			if rerr := t.d.Remove(ctx, chain[j]); rerr != nil && err == nil {
				err = rerr
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
