package daemon

import (
	"context"
	"errors"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/volume"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/images"
)

// DiskUsage answers GET /system/df (`docker system df`) in the 1.41 shape.
// Every figure comes from the storage drivers' Usage, so it means the same
// on every driver: LayersSize is the committed snapshots (the images'
// layers, unpacked per driver) of every enabled driver; a container's
// SizeRw is its active snapshot's. An image's Size is the sum of its
// layers' snapshots (the largest copy when several drivers hold a layer),
// SharedSize the part in layers another image shares; an image no driver
// has unpacked yet shows its layers' content size. A volume's size is its
// driver's Usage when a storage driver holds it, else what its directory
// takes on the host filesystem.
func (d *Daemon) DiskUsage(ctx context.Context) (types.DiskUsage, error) {
	du := types.DiskUsage{Images: []*image.Summary{}, Containers: []*container.Summary{}, Volumes: []*volume.Volume{}, BuildCache: []*build.CacheRecord{}}
	layerSize := map[string]int64{} // chain ID -> largest size over the drivers
	for _, name := range d.names {
		sizes, err := committedUsage(ctx, d.drivers[name])
		if err != nil {
			return du, err
		}
		for k, s := range sizes {
			du.LayersSize += s
			layerSize[k] = max(layerSize[k], s)
		}
	}
	list, err := d.images.List(filters.NewArgs())
	if err != nil {
		return du, err
	}
	type imageLayers struct {
		sum    *image.Summary
		chains []digest.Digest
	}
	var imgs []imageLayers
	users := map[digest.Digest]int{} // chain ID -> images using it
	for i := range list {
		s := &list[i]
		insp, err := d.images.Inspect(s.ID)
		if err != nil {
			continue // removed meanwhile
		}
		var chains []digest.Digest
		if insp.RootFS.Type == "layers" {
			diffs := make([]digest.Digest, 0, len(insp.RootFS.Layers))
			for _, l := range insp.RootFS.Layers {
				diffs = append(diffs, digest.Digest(l))
			}
			chains = images.ChainIDs(diffs)
		}
		for _, c := range chains {
			users[c]++
		}
		imgs = append(imgs, imageLayers{sum: s, chains: chains})
	}
	d.mu.Lock()
	for _, im := range imgs {
		id, _ := digest.Parse(im.sum.ID)
		im.sum.Containers = int64(d.imageUse[id])
	}
	d.mu.Unlock()
	for _, im := range imgs {
		var size, shared int64
		unpacked := len(im.chains) > 0
		for _, c := range im.chains {
			s, ok := layerSize[c.String()]
			unpacked = unpacked && ok
			size += s
			if users[c] > 1 {
				shared += s
			}
		}
		// An image no driver has unpacked yet keeps the size of its
		// layers' content, and shares nothing on disk.
		im.sum.SharedSize = 0
		if unpacked {
			im.sum.Size, im.sum.SharedSize = size, shared
		}
		du.Images = append(du.Images, im.sum)
	}
	ctrs, err := d.ListContainersWith(ctx, container.ListOptions{All: true, Size: true})
	if err != nil {
		return du, err
	}
	for i := range ctrs {
		du.Containers = append(du.Containers, &ctrs[i])
	}
	vols, err := d.vols.DiskUsage(ctx)
	if err != nil {
		return du, err
	}
	du.Volumes = append(du.Volumes, vols...)
	return du, nil
}

// committedUsage returns the Usage of each committed snapshot of drv.
func committedUsage(ctx context.Context, drv drivers.Driver) (map[string]int64, error) {
	var names []string
	err := drv.Walk(ctx, func(_ context.Context, info drivers.Info) error {
		names = append(names, info.Name)
		return nil
	}, drivers.Filter{Kind: drivers.KindCommitted})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		u, err := drv.Usage(ctx, n)
		if errors.Is(err, drivers.ErrNotFound) {
			continue // an image removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[n] = u.Size
	}
	return out, nil
}
