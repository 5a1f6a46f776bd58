package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/continuity/fs"
	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/volumes"
)

// openVolumes opens the volume store under DATA-ROOT/volumes and counts
// which container uses which volume. (What a crashed daemon left mounted
// of its driver-backed volumes is unmounted after its containers are
// purged: Store.Recover in New.)
func (d *Daemon) openVolumes(recs []containers.Record) error {
	var err error
	if d.vols, err = volumes.New(d.db, filepath.Join(d.cfg.DataRoot, "volumes"), d.Driver, d.names); err != nil {
		return err
	}
	for _, r := range recs {
		for _, m := range r.Mounts {
			if m.Type == mount.TypeVolume {
				d.vols.Ref(m.Name, r.ID)
			}
		}
	}
	return nil
}

// Volumes returns the volume store (docker system df reads its
// DiskUsage).
func (d *Daemon) Volumes() *volumes.Store { return d.vols }

// CreateVolume answers POST /volumes/create.
func (d *Daemon) CreateVolume(ctx context.Context, o volume.CreateOptions) (*volume.Volume, error) {
	r, _, err := d.createVolume(ctx, o, false, "")
	if err != nil {
		return nil, err
	}
	return d.vols.Volume(r), nil
}

// createVolume makes a volume, or finds the one of that name, counts the
// container user ("" for none) as using it, and publishes the create of a
// new one.
func (d *Daemon) createVolume(ctx context.Context, o volume.CreateOptions, anonymous bool, user string) (volumes.Record, bool, error) {
	r, created, err := d.vols.Create(ctx, o, anonymous, user)
	if err != nil {
		return r, false, err
	}
	if created {
		d.emit(eventtypes.VolumeEventType, eventtypes.ActionCreate, r.Name, map[string]string{"driver": r.Driver})
	}
	return r, created, nil
}

// ListVolumes answers GET /volumes with the filters dangling, name,
// driver and label.
func (d *Daemon) ListVolumes(_ context.Context, f filters.Args) (volume.ListResponse, error) {
	out := volume.ListResponse{Volumes: []*volume.Volume{}, Warnings: []string{}}
	if err := f.Validate(map[string]bool{"dangling": true, "name": true, "driver": true, "label": true}); err != nil {
		return out, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	dangling := f.Contains("dangling")
	wantDangling, err := f.GetBoolOrDefault("dangling", false)
	if err != nil {
		return out, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	recs, err := d.vols.List()
	if err != nil {
		return out, err
	}
	for _, r := range recs {
		switch {
		case dangling && d.vols.InUse(r.Name) == wantDangling,
			f.Contains("name") && !slices.ContainsFunc(f.Get("name"), func(n string) bool { return strings.Contains(r.Name, n) }),
			f.Contains("driver") && !f.ExactMatch("driver", r.Driver),
			f.Contains("label") && !f.MatchKVList("label", r.Labels):
			continue
		}
		out.Volumes = append(out.Volumes, d.vols.Volume(r))
	}
	return out, nil
}

// InspectVolume answers GET /volumes/{name}.
func (d *Daemon) InspectVolume(_ context.Context, name string) (*volume.Volume, error) {
	r, err := d.vols.Get(name)
	if err != nil {
		return nil, err
	}
	return d.vols.Volume(r), nil
}

// RemoveVolume answers DELETE /volumes/{name}: a volume a container uses
// is refused (409), as dockerd does, force or not.
func (d *Daemon) RemoveVolume(ctx context.Context, name string, force bool) error {
	if err := d.vols.Remove(ctx, name, force); err != nil {
		return err
	}
	d.emit(eventtypes.VolumeEventType, eventtypes.ActionDestroy, name, map[string]string{"driver": volumes.LocalDriver})
	return nil
}

// PruneVolumes answers POST /volumes/prune: every volume no container
// uses that the label filters select (only anonymous ones when asked).
func (d *Daemon) PruneVolumes(ctx context.Context, f filters.Args, anonymousOnly bool) (volume.PruneReport, error) {
	rep := volume.PruneReport{VolumesDeleted: []string{}}
	if err := f.Validate(map[string]bool{"label": true, "label!": true, "all": true}); err != nil {
		return rep, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	vols, err := d.vols.DiskUsage(ctx)
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, v := range vols {
		r, err := d.vols.Get(v.Name)
		if err != nil || v.UsageData.RefCount > 0 || anonymousOnly && !r.Anonymous || !labelsMatch(f, r.Labels) {
			continue
		}
		if err := d.RemoveVolume(ctx, v.Name, false); err != nil {
			if !errors.Is(err, drivers.ErrFailedPrecondition) {
				errs = append(errs, err)
			}
			continue
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, v.Name)
		rep.SpaceReclaimed += uint64(max(v.UsageData.Size, 0))
	}
	return rep, errors.Join(errs...)
}

// parseMounts reads a create request's mounts, in dockerd's order:
// --volumes-from first, -v and --mount over them by destination, then the
// image's VOLUMEs where nothing is mounted yet (anonymous volumes). It
// checks --tmpfs but leaves it to start, and creates nothing: a bind's
// missing source and the volumes come with createMounts.
func (d *Daemon) parseMounts(hc *container.HostConfig, imageVolumes map[string]struct{}) ([]volumes.MountPoint, error) {
	byDest := map[string]volumes.MountPoint{}
	var order []string
	put := func(m volumes.MountPoint) {
		if _, ok := byDest[m.Destination]; !ok {
			order = append(order, m.Destination)
		}
		byDest[m.Destination] = m
	}
	for _, from := range hc.VolumesFrom {
		ref, mode, _ := strings.Cut(from, ":")
		if mode != "" && mode != "ro" && mode != "rw" {
			return nil, fmt.Errorf("invalid mode for volumes-from: %s: want ro or rw: %w", from, drivers.ErrInvalidArgument)
		}
		src, err := d.ctrs.Get(ref)
		if err != nil {
			return nil, fmt.Errorf("volumes-from %s: %w", ref, err)
		}
		for _, m := range src.Mounts {
			if m.Type == mount.TypeTmpfs {
				continue
			}
			if mode != "" {
				m.RW, m.Mode = mode == "rw", mode
			}
			put(m)
		}
	}
	own := map[string]bool{}
	add := func(m volumes.MountPoint) error {
		if own[m.Destination] {
			return fmt.Errorf("Duplicate mount point: %s: %w", m.Destination, drivers.ErrInvalidArgument)
		}
		own[m.Destination] = true
		put(m)
		return nil
	}
	for _, b := range hc.Binds {
		m, err := volumes.ParseBind(b)
		if err != nil {
			return nil, err
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for _, c := range hc.Mounts {
		m, err := volumes.ParseMount(c)
		if err != nil {
			return nil, err
		}
		if err := add(m); err != nil {
			return nil, err
		}
	}
	for dst, opts := range hc.Tmpfs {
		m, err := volumes.ParseTmpfs(dst, opts)
		if err != nil {
			return nil, err
		}
		if own[m.Destination] {
			return nil, fmt.Errorf("Duplicate mount point: %s: %w", m.Destination, drivers.ErrInvalidArgument)
		}
		own[m.Destination] = true
	}
	for dst := range imageVolumes {
		// A --tmpfs on an image's VOLUME takes its place, as in dockerd.
		if dst = filepath.Clean(dst); filepath.IsAbs(dst) && dst != "/" && !own[dst] {
			if _, ok := byDest[dst]; !ok {
				put(volumes.MountPoint{MountPoint: container.MountPoint{Type: mount.TypeVolume, Destination: dst, RW: true, Driver: volumes.LocalDriver}})
			}
		}
	}
	out := make([]volumes.MountPoint, 0, len(order))
	for _, dst := range order {
		out = append(out, byDest[dst])
	}
	return out, nil
}

// createMounts makes what the container id's mounts need: a -v bind's
// missing source directory (as dockerd does for -v, not for --mount), the
// named volumes not there yet and the anonymous ones (named now); it
// counts id as a user of each volume. undo gives back what it made.
func (d *Daemon) createMounts(ctx context.Context, id string, mounts []volumes.MountPoint) (undo func(), err error) {
	var made, used []string
	undo = func() {
		for _, n := range used {
			d.vols.Unref(n, id)
		}
		for _, n := range made {
			_ = d.RemoveVolume(context.WithoutCancel(ctx), n, true)
		}
	}
	defer func() {
		if err != nil {
			undo()
		}
	}()
	for i := range mounts {
		m := &mounts[i]
		switch m.Type {
		case mount.TypeBind:
			if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					return undo, fmt.Errorf("creating the bind source %s: %w", m.Source, err)
				}
			}
		case mount.TypeVolume:
			r, created, err := d.createVolume(ctx, volume.CreateOptions{Name: m.Name, Labels: m.Labels, DriverOpts: m.DriverOpts}, m.Name == "", id)
			if err != nil {
				return undo, err
			}
			m.Name = r.Name
			used = append(used, r.Name)
			if created {
				made = append(made, r.Name)
			}
		}
	}
	return undo, nil
}

// mountPoints are r's mounts as inspect and ps show them.
func (d *Daemon) mountPoints(r containers.Record) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range r.Mounts {
		mp := m.MountPoint
		if mp.Type == mount.TypeVolume {
			mp.Source = d.vols.Path(mp.Name)
		}
		out = append(out, mp)
	}
	return out
}

// mountVolumes readies r's mounts for a start on rootfs (mounted): a
// driver-backed volume's snapshot is mounted, a new empty volume gets the
// image's content at its destination (unless nocopy), and each volume's
// mount is published. It returns the OCI mounts, binds made rbind with
// their propagation (rprivate unless asked).
func (d *Daemon) mountVolumes(ctx context.Context, r containers.Record, rootfs string) (_ []specs.Mount, err error) {
	var mounted []string
	defer func() {
		if err != nil {
			for _, n := range mounted {
				_ = d.vols.Unmount(n)
			}
		}
	}()
	var out []specs.Mount
	for _, m := range r.Mounts {
		prop := string(m.Propagation)
		if prop == "" {
			prop = string(mount.PropagationRPrivate)
		}
		sm := specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: []string{"rbind", prop}}
		switch m.Type {
		case mount.TypeBind:
			if _, err := os.Stat(m.Source); err != nil {
				return nil, fmt.Errorf("bind source %s of %s: %w", m.Source, m.Destination, err)
			}
		case mount.TypeVolume:
			path, err := d.vols.Mount(ctx, m.Name)
			if err != nil {
				return nil, err
			}
			mounted = append(mounted, m.Name)
			if !m.NoCopy && d.vols.Empty(m.Name) {
				if err := copyUp(rootfs, m.Destination, path); err != nil {
					return nil, fmt.Errorf("copying %s of the image into volume %s: %w", m.Destination, m.Name, err)
				}
			}
			sm.Source = path
			d.emit(eventtypes.VolumeEventType, eventtypes.ActionMount, m.Name, map[string]string{
				"container": r.ID, "destination": m.Destination, "driver": m.Driver,
				"propagation": string(m.Propagation), "read/write": strconv.FormatBool(m.RW)})
		case mount.TypeTmpfs:
			sm = specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs",
				Options: append([]string{"nosuid", "nodev", "noexec"}, m.Options...)}
		default:
			continue
		}
		if !m.RW {
			sm.Options = append(sm.Options, "ro")
		}
		out = append(out, sm)
	}
	for dst, opts := range r.HostConfig.Tmpfs {
		m, err := volumes.ParseTmpfs(dst, opts)
		if err != nil {
			return nil, err
		}
		sm := specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs", Options: m.Options}
		if !m.RW {
			sm.Options = append(sm.Options, "ro")
		}
		out = append(out, sm)
	}
	return out, nil
}

// withMounts puts the container's own mounts into the spec: one on a
// default mount's destination (a tmpfs on /dev/shm) replaces it, parents
// go before what is mounted below them, and a shared or slave bind makes
// the root's propagation follow, as runc requires.
func withMounts(s *specs.Spec, extra []specs.Mount) {
	if len(extra) == 0 {
		return
	}
	s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool {
		return slices.ContainsFunc(extra, func(e specs.Mount) bool { return e.Destination == m.Destination })
	})
	slices.SortStableFunc(extra, func(a, b specs.Mount) int {
		return strings.Count(a.Destination, "/") - strings.Count(b.Destination, "/")
	})
	s.Mounts = append(s.Mounts, extra...)
	for _, m := range extra {
		for _, o := range m.Options {
			switch o {
			case "shared", "rshared":
				s.Linux.RootfsPropagation = "rshared"
			case "slave", "rslave":
				if s.Linux.RootfsPropagation == "" {
					s.Linux.RootfsPropagation = "rslave"
				}
			}
		}
	}
}

// copyUp copies the directory dst of the image (resolved inside rootfs,
// so no symlink of the image leads out of it) into the empty volume at
// path, as dockerd fills a new volume; nothing there is nothing to copy.
func copyUp(rootfs, dst, path string) error {
	root, err := openInRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.close()
	fd, err := root.openat2(dst, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		if errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrInvalidArgument) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	return fs.CopyDir(path, "/proc/self/fd/"+strconv.Itoa(fd))
}

// unmountVolumes ends a run's use of r's volumes: a driver-backed one is
// unmounted after its last running container, and each unmount is
// published.
func (d *Daemon) unmountVolumes(r containers.Record) error {
	var errs []error
	for _, m := range r.Mounts {
		if m.Type != mount.TypeVolume {
			continue
		}
		errs = append(errs, d.vols.Unmount(m.Name))
		d.emit(eventtypes.VolumeEventType, eventtypes.ActionUnmount, m.Name, map[string]string{"container": r.ID, "driver": m.Driver})
	}
	return errors.Join(errs...)
}

// releaseVolumes drops the removed container r's use of its volumes and,
// with anonymous (rm -v, run --rm), removes its anonymous volumes that no
// other container uses.
func (d *Daemon) releaseVolumes(ctx context.Context, r containers.Record, anonymous bool) error {
	var errs []error
	for _, m := range r.Mounts {
		if m.Type != mount.TypeVolume {
			continue
		}
		d.vols.Unref(m.Name, r.ID)
		if !anonymous || d.vols.InUse(m.Name) {
			continue
		}
		if v, err := d.vols.Get(m.Name); err == nil && v.Anonymous {
			errs = append(errs, d.RemoveVolume(ctx, m.Name, true))
		}
	}
	return errors.Join(errs...)
}

// mergeSet adds b's keys to a.
func mergeSet(a, b map[string]struct{}) map[string]struct{} {
	if a == nil && len(b) > 0 {
		a = map[string]struct{}{}
	}
	for k := range b {
		a[k] = struct{}{}
	}
	return a
}

// usesVolume is ps's volume filter, as dockerd's: a container mounting
// one of the volumes named, or anything at one of the destinations.
func usesVolume(values []string, r containers.Record) bool {
	return slices.ContainsFunc(r.Mounts, func(m volumes.MountPoint) bool {
		return slices.Contains(values, m.Destination) || m.Type == mount.TypeVolume && slices.Contains(values, m.Name)
	})
}
