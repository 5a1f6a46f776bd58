package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/images"
)

// CommitContainer answers POST /commit: the container's changes, as the
// layer layer.DiffSnapshot writes (from an overlay upper directory or
// btrfs send where the driver has them) less the runtime's mountpoints
// (mountpoints.go), become a new image on top of the container's, with
// the container's config (the request's on top, then the changes). A running container is paused meanwhile unless
// o.Pause is false.
func (d *Daemon) CommitContainer(ctx context.Context, ref string, o container.CommitOptions) (string, error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return "", err
	}
	if o.Reference != "" {
		if _, err := images.NormalizeRef(o.Reference); err != nil {
			return "", err
		}
	}
	img, err := d.images.Inspect(r.ImageID.String())
	if err != nil {
		return "", err
	}
	var cfg dockerspec.DockerOCIImageConfig
	if img.Config != nil {
		cfg = *img.Config
	}
	overlayConfig(&cfg, r.Config)
	overlayConfig(&cfg, o.Config)
	if err := images.ApplyChanges(&cfg, o.Changes); err != nil {
		return "", err
	}
	drv, err := d.Driver(r.Driver)
	if err != nil {
		return "", err
	}
	f, err := d.images.TempFile("commit-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // gone already once Create moved it
	resume, err := d.pauseFor(ctx, r, o.Pause)
	if err != nil {
		f.Close()
		return "", err
	}
	dg, err := layer.DiffSnapshot(ctx, f, drv, r.SnapshotKey, layer.WithTarFilter(mountpointFilter))
	err = errors.Join(err, resume(), f.Close())
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", r.Name, err)
	}
	id, err := d.images.Create(images.NewImage{
		Parent: r.ImageID, Layer: f.Name(), DiffID: dg.DiffID, Config: cfg,
		Author: o.Author, Comment: o.Comment, CreatedBy: strings.Join(append([]string{r.Path}, r.Args...), " "),
		Ref: o.Reference,
	})
	if err != nil {
		return "", err
	}
	d.containerEvent(r, eventtypes.ActionCommit, map[string]string{"comment": o.Comment, "imageID": id.String(), "imageRef": o.Reference})
	return id.String(), nil
}

// pauseFor freezes a running container while its snapshot is read, as
// dockerd does for commit; the returned func thaws it.
func (d *Daemon) pauseFor(ctx context.Context, r containers.Record, pause bool) (func() error, error) {
	nothing := func() error { return nil }
	if !pause || r.State.Status != containers.Running {
		return nothing, nil
	}
	l := d.live(r.ID)
	l.mu.Lock()
	c := l.c
	l.mu.Unlock()
	if c == nil {
		return nothing, nil
	}
	if err := freeze(ctx, c); err != nil {
		return nil, fmt.Errorf("pausing %s for the commit: %w", r.Name, err)
	}
	return func() error { return c.Resume(context.WithoutCancel(ctx)) }, nil
}

// overlayConfig sets in cfg what c sets: the container's (or the commit
// request's) settings an image keeps.
func overlayConfig(cfg *dockerspec.DockerOCIImageConfig, c *container.Config) {
	if c == nil {
		return
	}
	if c.Healthcheck != nil {
		h := *c.Healthcheck
		h.Test = slices.Clone(h.Test)
		cfg.Healthcheck = &h
	}
	if len(c.Shell) > 0 {
		cfg.Shell = slices.Clone(c.Shell)
	}
	if len(c.Cmd) > 0 {
		cfg.Cmd = slices.Clone(c.Cmd)
	}
	if len(c.Entrypoint) > 0 {
		cfg.Entrypoint = slices.Clone(c.Entrypoint)
	}
	if len(c.Env) > 0 {
		cfg.Env = mergeEnv(cfg.Env, c.Env)
	}
	if c.WorkingDir != "" {
		cfg.WorkingDir = c.WorkingDir
	}
	if c.User != "" {
		cfg.User = c.User
	}
	if c.StopSignal != "" {
		cfg.StopSignal = c.StopSignal
	}
	for p := range c.ExposedPorts {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		cfg.ExposedPorts[string(p)] = struct{}{}
	}
	for v := range c.Volumes {
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		cfg.Volumes[v] = struct{}{}
	}
	for k, v := range c.Labels {
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		cfg.Labels[k] = v
	}
}

// ContainerChanges answers GET /containers/{id}/changes: the layer a
// commit would make, read as changes against the image's tree (a path
// the image has is modified, else added; a whiteout is a deletion), the
// directories holding a change included as dockerd lists them.
func (d *Daemon) ContainerChanges(ctx context.Context, ref string) ([]container.FilesystemChange, error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return nil, err
	}
	drv, err := d.Driver(r.Driver)
	if err != nil {
		return nil, err
	}
	tree, err := d.images.Paths(r.ImageID)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	diffErr := make(chan error, 1)
	go func() {
		_, err := layer.DiffSnapshot(ctx, pw, drv, r.SnapshotKey, layer.WithTarFilter(mountpointFilter))
		pw.CloseWithError(err)
		diffErr <- err
	}()
	kinds := map[string]container.ChangeType{}
	var opaque []string
	walkErr := images.WalkLayer(pr, func(p string, whiteout, isOpaque bool) {
		switch {
		case isOpaque:
			opaque = append(opaque, p)
		case whiteout:
			kinds[p] = container.ChangeDelete
		case tree[p]:
			kinds[p] = container.ChangeModify
		default:
			kinds[p] = container.ChangeAdd
		}
	})
	_, _ = io.Copy(io.Discard, pr) // let the writer finish whatever happened
	if err := errors.Join(<-diffErr, walkErr); err != nil {
		return nil, fmt.Errorf("changes of %s: %w", r.Name, err)
	}
	// An opaque directory hides what the image had in it and the layer
	// did not write again.
	for _, dir := range opaque {
		for p := range tree {
			if strings.HasPrefix(p, dir+"/") && !strings.Contains(p[len(dir)+1:], "/") {
				if _, ok := kinds[p]; !ok {
					kinds[p] = container.ChangeDelete
				}
			}
		}
	}
	// dockerd lists the directories holding a change as modified.
	for p := range kinds {
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := kinds[dir]; ok {
				break
			}
			kinds[dir] = container.ChangeModify
			if !tree[dir] {
				kinds[dir] = container.ChangeAdd
			}
		}
	}
	out := make([]container.FilesystemChange, 0, len(kinds))
	for p, k := range kinds {
		out = append(out, container.FilesystemChange{Path: p, Kind: k})
	}
	slices.SortFunc(out, func(a, b container.FilesystemChange) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// ImportImage answers POST /images/create?fromSrc=-: a one-layer image of
// the rootfs tar in r, its config made from the changes.
func (d *Daemon) ImportImage(ctx context.Context, r io.Reader, o api.ImportOptions) (string, error) {
	if o.Ref != "" {
		if _, err := images.NormalizeRef(o.Ref); err != nil {
			return "", err
		}
	}
	var cfg dockerspec.DockerOCIImageConfig
	if err := images.ApplyChanges(&cfg, o.Changes); err != nil {
		return "", err
	}
	message := o.Message
	if message == "" {
		message = "Imported from -" // as dockerd records it
	}
	id, err := d.images.Import(ctx, r, images.NewImage{Config: cfg, Comment: message, Ref: o.Ref})
	if err != nil {
		return "", err
	}
	d.imageEvent(eventtypes.ActionImport, id.String(), o.Ref)
	return id.String(), nil
}
