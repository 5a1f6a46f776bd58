package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	buildtypes "github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/runtime/build"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/images"
)

// Build answers POST /build: the classic builder over the daemon's own
// operations (buildOps). Contexts are unpacked in the image store's
// temporary directory, which the next start empties after a crash.
func (d *Daemon) Build(ctx context.Context, r io.Reader, o build.Options, out build.Output) (string, error) {
	if o.Driver == "" {
		if v := o.BuildArgs[build.DriverArg]; v != nil {
			o.Driver = *v
		}
	}
	if o.Driver != "" {
		if _, err := d.Driver(o.Driver); err != nil {
			return "", fmt.Errorf("%s=%s: %w", build.DriverArg, o.Driver, err)
		}
	}
	return build.New(buildOps{d}, d.images.TempDir()).Build(ctx, r, o, out)
}

// buildOps is the daemon as the builder's Backend.
type buildOps struct{ d *Daemon }

func (b buildOps) Image(_ context.Context, ref string) (build.Image, error) {
	img, err := b.d.images.Inspect(ref)
	if err != nil {
		return build.Image{}, err
	}
	out := build.Image{ID: img.ID}
	if img.Config != nil {
		out.Config = *img.Config
	}
	return out, nil
}

func (b buildOps) CreateContainer(ctx context.Context, image string, cfg *container.Config, driver string) (string, error) {
	hc := &container.HostConfig{}
	if driver != "" {
		hc.StorageOpt = map[string]string{driverKey: driver}
	}
	resp, err := b.d.CreateContainer(ctx, "", container.CreateRequest{Config: cfg, HostConfig: hc})
	return resp.ID, err
}

// Run waits for the next exit before it starts the container, so a
// command that ends at once is not missed, and follows the log meanwhile.
func (b buildOps) Run(ctx context.Context, id string, w io.Writer) (int, error) {
	ready := make(chan struct{})
	type result struct {
		resp container.WaitResponse
		err  error
	}
	waited := make(chan result, 1)
	go func() {
		resp, err := b.d.WaitContainer(ctx, id, container.WaitConditionNextExit, func() { close(ready) })
		waited <- result{resp, err}
	}()
	select {
	case <-ready:
	case res := <-waited:
		return 0, res.err
	}
	if err := b.d.StartContainer(ctx, id); err != nil {
		return 0, err
	}
	// A client that goes away ends the build: the step's container is
	// killed and removed, as dockerd does, rather than left running.
	stop := context.AfterFunc(ctx, func() {
		_ = b.d.DeleteContainer(context.WithoutCancel(ctx), id, true, true)
	})
	defer stop()
	pr, pw := io.Pipe()
	copied := make(chan error, 1)
	go func() {
		_, err := stdcopy.StdCopy(w, w, pr)
		_, _ = io.Copy(io.Discard, pr)
		copied <- err
	}()
	logErr := b.d.LogsContainer(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: true}, pw, func() {})
	pw.Close()
	res := <-waited
	if err := errors.Join(res.err, logErr, <-copied); err != nil {
		return 0, err
	}
	return int(res.resp.StatusCode), nil
}

func (b buildOps) WithRootfs(ctx context.Context, id string, fn func(root string) error) error {
	return b.d.withRootfs(ctx, id, func(_ containers.Record, root string) error { return fn(root) })
}

func (b buildOps) RemoveContainer(ctx context.Context, id string) error {
	return b.d.DeleteContainer(ctx, id, true, true)
}

// Commit makes a step's image with exactly the builder's config (a
// docker commit would take the container's command into it).
func (b buildOps) Commit(ctx context.Context, c build.Commit) (string, error) {
	n := images.NewImage{
		Parent: digest.Digest(c.Parent), Config: c.Config,
		CreatedBy: c.CreatedBy, Author: c.Author, BuildKey: c.Key,
	}
	if c.Container != "" {
		r, err := b.d.ctrs.Get(c.Container)
		if err != nil {
			return "", err
		}
		drv, err := b.d.Driver(r.Driver)
		if err != nil {
			return "", err
		}
		f, err := b.d.images.TempFile("build-")
		if err != nil {
			return "", err
		}
		defer os.Remove(f.Name()) // gone already once Create moved it
		dg, err := layer.DiffSnapshot(ctx, f, drv, r.SnapshotKey, layer.WithTarFilter(mountpointFilter))
		if err := errors.Join(err, f.Close()); err != nil {
			return "", fmt.Errorf("committing the build step's container %s: %w", r.Name, err)
		}
		n.Layer, n.DiffID = f.Name(), dg.DiffID
	}
	id, err := b.d.images.Create(n)
	return id.String(), err
}

func (b buildOps) Cached(_ context.Context, parent, key string) (string, bool) {
	id, ok := b.d.images.Child(digest.Digest(parent), key)
	return id.String(), ok
}

func (b buildOps) Tag(ctx context.Context, id, ref string) error {
	if _, err := images.NormalizeRef(ref); err != nil {
		return fmt.Errorf("tag %q: %w", ref, drivers.ErrInvalidArgument)
	}
	return b.d.TagImage(ctx, id, ref)
}

// PruneBuildCache answers POST /build/prune (docker builder prune): the
// untagged images of build steps that no container uses. A step's image
// is deleted alone; the layers its children share stay with them.
func (d *Daemon) PruneBuildCache(ctx context.Context) (buildtypes.CachePruneReport, error) {
	rep := buildtypes.CachePruneReport{CachesDeleted: []string{}}
	before := d.images.BlobBytes()
	for _, id := range d.images.BuildCache() {
		if d.imageInUse(id) {
			continue
		}
		if _, err := d.deleteImage(id.String(), true); err != nil {
			if errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrFailedPrecondition) {
				continue
			}
			return rep, err
		}
		rep.CachesDeleted = append(rep.CachesDeleted, id.String())
	}
	if after := d.images.BlobBytes(); after < before {
		rep.SpaceReclaimed = uint64(before - after)
	}
	if len(rep.CachesDeleted) > 0 {
		rep.SpaceReclaimed += uint64(max(d.collect(ctx), 0)) // the layers unpacked on the drivers
	}
	return rep, nil
}
