package daemon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/health"
)

// The filters GET /containers/json takes, and the statuses its status
// filter knows, as dockerd's.
var (
	listFilters = map[string]bool{"status": true, "name": true, "id": true, "ancestor": true, "label": true,
		"exited": true, "before": true, "since": true, "volume": true, "health": true}
	statuses = map[string]bool{"created": true, "restarting": true, "running": true, "removing": true,
		"paused": true, "exited": true, "dead": true}
)

func badFilter(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, drivers.ErrInvalidArgument)...)
}

// ListContainersWith answers GET /containers/json with its filters
// (status, name, id, ancestor, label, exited, before, since, volume,
// health), limit, and
// size (SizeRw from the driver's Usage of the rootfs snapshot).
func (d *Daemon) ListContainersWith(ctx context.Context, o container.ListOptions) ([]container.Summary, error) {
	f := o.Filters
	if err := f.Validate(listFilters); err != nil {
		return nil, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	for _, s := range f.Get("status") {
		if !statuses[s] {
			return nil, badFilter("invalid filter 'status=%s'", s)
		}
	}
	for _, h := range f.Get("health") {
		if container.ValidateHealthStatus(h) != nil {
			return nil, badFilter("Unrecognised filter value for health: %s", h)
		}
	}
	var exited []int
	for _, s := range f.Get("exited") {
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, badFilter("invalid filter 'exited=%s'", s)
		}
		exited = append(exited, n)
	}
	recs, err := d.ctrs.List()
	if err != nil {
		return nil, err
	}
	// before and since name containers; their creation times bound the
	// list.
	var before, since time.Time
	for key, t := range map[string]*time.Time{"before": &before, "since": &since} {
		for _, ref := range f.Get(key) {
			r, err := d.ctrs.Get(ref)
			if err != nil {
				return nil, badFilter("invalid filter '%s=%s': %v", key, ref, err)
			}
			*t = r.Created
		}
	}
	var ancestors []string
	for _, a := range f.Get("ancestor") {
		if id, err := d.images.Resolve(a); err == nil {
			ancestors = append(ancestors, id.String())
		}
	}
	keep := map[string]containers.Record{}
	for _, r := range recs {
		// A limit lists stopped containers too, as dockerd's (ps -n, -l).
		if !o.All && o.Limit <= 0 && !f.Contains("status") && !f.Contains("exited") && !isUp(r.State.Status) {
			continue
		}
		if !matchContainer(f, r, exited, ancestors, before, since) {
			continue
		}
		keep[r.ID] = r
	}
	all, err := d.ListContainers(ctx, true)
	if err != nil {
		return nil, err
	}
	out := []container.Summary{}
	for _, s := range all {
		r, ok := keep[s.ID]
		if !ok {
			continue
		}
		if o.Limit > 0 && len(out) == o.Limit {
			break
		}
		if o.Size {
			s.SizeRw, s.SizeRootFs = d.sizes(ctx, r)
		}
		out = append(out, s)
	}
	return out, nil
}

func matchContainer(f filters.Args, r containers.Record, exited []int, ancestors []string, before, since time.Time) bool {
	if f.Contains("status") && !f.ExactMatch("status", r.State.Status) {
		return false
	}
	if f.Contains("name") && !f.Match("name", "/"+r.Name) && !f.Match("name", r.Name) {
		return false
	}
	if f.Contains("health") && !f.ExactMatch("health", health.Status(r.State.Health)) {
		return false
	}
	if f.Contains("id") && !f.Match("id", r.ID) {
		return false
	}
	if f.Contains("label") && !f.MatchKVList("label", r.Config.Labels) {
		return false
	}
	if f.Contains("ancestor") {
		ok := false
		for _, a := range f.Get("ancestor") {
			ok = ok || a == r.Image
		}
		for _, id := range ancestors {
			ok = ok || id == r.ImageID.String()
		}
		if !ok {
			return false
		}
	}
	if len(exited) > 0 {
		ok := false
		for _, code := range exited {
			ok = ok || (r.State.Status == containers.Exited && r.State.ExitCode == code)
		}
		if !ok {
			return false
		}
	}
	if f.Contains("volume") && !usesVolume(f.Get("volume"), r) {
		return false
	}
	if !before.IsZero() && !r.Created.Before(before) {
		return false
	}
	if !since.IsZero() && !r.Created.After(since) {
		return false
	}
	return true
}

// sizes are a container's SizeRw (what its rootfs snapshot adds, by the
// driver's Usage) and SizeRootFs (that plus its image).
func (d *Daemon) sizes(ctx context.Context, r containers.Record) (int64, int64) {
	var rw int64
	if drv, ok := d.drivers[r.Driver]; ok {
		if u, err := drv.Usage(ctx, r.SnapshotKey); err == nil {
			rw = u.Size
		}
	}
	total := rw
	if img, err := d.images.Inspect(r.ImageID.String()); err == nil {
		total += img.Size
	}
	return rw, total
}

// PruneContainers answers POST /containers/prune: every container that is
// not running or paused goes, unless the until or label filters keep it.
func (d *Daemon) PruneContainers(ctx context.Context, f filters.Args) (container.PruneReport, error) {
	rep := container.PruneReport{ContainersDeleted: []string{}}
	until, err := pruneFilters(f)
	if err != nil {
		return rep, err
	}
	recs, err := d.ctrs.List()
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, r := range recs {
		if r.State.Status == containers.Running || r.State.Status == containers.Paused {
			continue
		}
		if !until.IsZero() && !r.Created.Before(until) || !labelsMatch(f, r.Config.Labels) {
			continue
		}
		rw, _ := d.sizes(ctx, r)
		if err := d.DeleteContainer(ctx, r.ID, false, false); err != nil {
			if !errors.Is(err, drivers.ErrNotFound) && !errors.Is(err, drivers.ErrFailedPrecondition) {
				errs = append(errs, err)
			}
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, r.ID)
		rep.SpaceReclaimed += uint64(max(rw, 0))
	}
	d.emit(eventtypes.ContainerEventType, eventtypes.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, errors.Join(errs...)
}

// PruneImages answers POST /images/prune: the dangling images (no tag),
// or with dangling=false every image, that no container uses and the
// until and label filters do not keep.
func (d *Daemon) PruneImages(ctx context.Context, f filters.Args) (image.PruneReport, error) {
	rep := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	until, err := pruneFilters(f, "dangling")
	if err != nil {
		return rep, err
	}
	danglingOnly, err := f.GetBoolOrDefault("dangling", true)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	list, err := d.images.List(filters.NewArgs())
	if err != nil {
		return rep, err
	}
	before := d.images.BlobBytes()
	var errs []error
	for _, img := range list {
		if danglingOnly && len(img.RepoTags)+len(img.RepoDigests) > 0 { // a digest ref names it too
			continue
		}
		if !until.IsZero() && !time.Unix(img.Created, 0).Before(until) || !labelsMatch(f, img.Labels) {
			continue
		}
		id, err := d.images.Resolve(img.ID)
		if err != nil || d.imageInUse(id) {
			continue
		}
		steps, err := d.deleteImage(img.ID, true)
		if err != nil {
			if !errors.Is(err, drivers.ErrNotFound) && !errors.Is(err, drivers.ErrFailedPrecondition) {
				errs = append(errs, err)
			}
			continue
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, steps...)
	}
	if after := d.images.BlobBytes(); after < before {
		rep.SpaceReclaimed = uint64(before - after)
	}
	if deleted(rep.ImagesDeleted) {
		rep.SpaceReclaimed += uint64(max(d.collect(ctx), 0)) // the layers unpacked on the drivers
	}
	d.emit(eventtypes.ImageEventType, eventtypes.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	return rep, errors.Join(errs...)
}

// pruneFilters checks a prune's filters (until, label, label! and the
// extra keys allowed) and returns until's time.
func pruneFilters(f filters.Args, extra ...string) (time.Time, error) {
	allowed := map[string]bool{"until": true, "label": true, "label!": true}
	for _, k := range extra {
		allowed[k] = true
	}
	if err := f.Validate(allowed); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	var until time.Time
	for _, v := range f.Get("until") {
		t, err := parseUntil(v, time.Now())
		if err != nil {
			return time.Time{}, err
		}
		until = t
	}
	return until, nil
}

// parseUntil reads a time as docker's filters give it: a duration before
// now ("24h"), Unix seconds, or an RFC 3339 time or date.
func parseUntil(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(0, int64(secs*1e9)), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, badFilter("invalid filter 'until=%s': a duration, Unix time or RFC 3339 time", v)
}

// labelsMatch applies label (all must match) and label! (none may).
func labelsMatch(f filters.Args, labels map[string]string) bool {
	if f.Contains("label") && !f.MatchKVList("label", labels) {
		return false
	}
	if f.Contains("label!") && f.MatchKVList("label!", labels) {
		return false
	}
	return true
}
