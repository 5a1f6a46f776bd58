package daemon

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
)

// collectLayers removes, from every enabled driver, the committed layers
// (snapshots named by a chain ID) that no image in the store names any
// more: image deletes and prunes remove records and blobs, and without
// this every layer ever unpacked would stay on its driver. A layer that
// something still stands on (a container's rootfs, a layer above it that
// is kept) is left for a later collection. It returns the bytes the
// removed layers held, as the drivers' Usage says.
//
// It holds unpackMu for writing, so no container's rootfs is being
// unpacked or prepared on a layer while the layer is judged and removed.
func (d *Daemon) collectLayers(ctx context.Context) (int64, error) {
	d.unpackMu.Lock()
	defer d.unpackMu.Unlock()
	live, err := d.images.Chains()
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for _, name := range d.names {
		n, err := collectOn(ctx, d.drivers[name], live)
		freed += n
		if err != nil {
			errs = append(errs, fmt.Errorf("storage driver %s: %w", name, err))
		}
	}
	return freed, errors.Join(errs...)
}

// collectOn removes the unneeded layers of one driver, leaves first.
func collectOn(ctx context.Context, drv drivers.Driver, live map[string]bool) (int64, error) {
	children := map[string]int{}
	parent := map[string]string{}
	var dead []string
	err := drv.Walk(ctx, func(_ context.Context, info drivers.Info) error {
		if info.Parent != "" {
			children[info.Parent]++
		}
		parent[info.Name] = info.Parent
		if _, err := digest.Parse(info.Name); err == nil && info.Kind == drivers.KindCommitted && !live[info.Name] {
			dead = append(dead, info.Name)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var freed int64
	var errs []error
	for progress := true; progress; {
		progress = false
		left := dead[:0]
		for _, key := range dead {
			if children[key] > 0 {
				left = append(left, key)
				continue
			}
			u, uerr := drv.Usage(ctx, key)
			if err := drv.Remove(ctx, key); err != nil {
				if !errors.Is(err, drivers.ErrFailedPrecondition) && !errors.Is(err, drivers.ErrNotFound) {
					errs = append(errs, fmt.Errorf("remove unused layer %s: %w", key, err))
				}
				continue
			}
			if uerr == nil {
				freed += u.Size
			}
			if p := parent[key]; p != "" {
				children[p]--
			}
			progress = true
		}
		dead = left
	}
	return freed, errors.Join(errs...)
}
