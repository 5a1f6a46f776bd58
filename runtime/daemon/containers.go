package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/storage"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/health"
	"github.com/layerlab/layerlab/runtime/logs"
	"github.com/layerlab/layerlab/runtime/network"
)

// driverKey is the --storage-opt key that picks a container's driver (a
// layerlab extension).
const driverKey = "driver"

// containerDir holds a container's rootfs mount point and json-file log.
func (d *Daemon) containerDir(id string) string {
	return filepath.Join(d.cfg.DataRoot, "containers", id)
}

func (d *Daemon) rootfs(id string) string { return filepath.Join(d.containerDir(id), "rootfs") }

// CreateContainer answers POST /containers/create: it resolves the image,
// unpacks it into the container's driver and prepares the rootfs snapshot.
func (d *Daemon) CreateContainer(ctx context.Context, name string, req container.CreateRequest) (container.CreateResponse, error) {
	var out container.CreateResponse
	if req.Config == nil || req.Config.Image == "" {
		return out, fmt.Errorf("config: no image given: %w", drivers.ErrInvalidArgument)
	}
	hc := req.HostConfig
	if hc == nil {
		hc = &container.HostConfig{}
	}
	// The record names the driver (the daemon's by default): docker-py's
	// run reads the output back only when inspect names one that keeps it.
	if err := d.mergeLogConfig(&hc.LogConfig); err != nil {
		return out, err
	}
	if err := validateRestartPolicy(hc); err != nil {
		return out, err
	}
	if hcfg := req.Config.Healthcheck; hcfg != nil {
		// dockerd drops StartInterval from requests below API 1.44,
		// which is every request layerlabd (1.41) serves.
		c := *hcfg
		c.StartInterval = 0
		req.Config.Healthcheck = &c
		if err := health.Validate(&c); err != nil {
			return out, err
		}
	}
	warnings, err := d.checkResources(hc)
	if err != nil {
		return out, err
	}
	driverName, size, err := d.storageOpts(hc.StorageOpt)
	if err != nil {
		return out, err
	}
	drv, err := d.Driver(driverName)
	if err != nil {
		return out, err
	}
	var snapOpts []drivers.Opt
	if size > 0 {
		if caps := drv.Capabilities(); !caps.Quota {
			return out, fmt.Errorf("--storage-opt size: storage driver %s cannot limit a container's size here: %s: %w", driverName, caps.QuotaNote, drivers.ErrInvalidArgument)
		}
		snapOpts = append(snapOpts, drivers.WithSize(size))
	}
	if _, err := network.ParseBindings(hc.PortBindings, nil, false); err != nil {
		return out, err
	}
	imageID, err := d.images.Resolve(req.Config.Image)
	if err != nil {
		return out, err
	}
	img, err := d.images.Inspect(imageID.String())
	if err != nil {
		return out, err
	}
	cfg := *req.Config
	if ic := img.Config; ic != nil {
		if len(cfg.Entrypoint) == 0 {
			cfg.Entrypoint = ic.Entrypoint
			if len(cfg.Cmd) == 0 {
				cfg.Cmd = ic.Cmd
			}
		}
		cfg.Env = mergeEnv(ic.Env, cfg.Env)
		if cfg.WorkingDir == "" {
			cfg.WorkingDir = ic.WorkingDir
		}
		if cfg.User == "" {
			cfg.User = ic.User
		}
		for p := range ic.ExposedPorts {
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = nat.PortSet{}
			}
			cfg.ExposedPorts[nat.Port(p)] = struct{}{}
		}
		if len(cfg.Shell) == 0 {
			cfg.Shell = ic.Shell
		}
		cfg.Healthcheck = health.Merge(cfg.Healthcheck, ic.Healthcheck)
	}
	if _, err := network.ParseBindings(nil, cfg.ExposedPorts, true); err != nil {
		return out, fmt.Errorf("exposed ports: %w", err)
	}
	args := append(append([]string(nil), cfg.Entrypoint...), cfg.Cmd...)
	if len(args) == 0 {
		return out, fmt.Errorf("no command specified: %w", drivers.ErrInvalidArgument)
	}
	// Anonymous volumes: the image's VOLUMEs and the request's (-v /ctr).
	anonymous := maps.Clone(cfg.Volumes)
	if img.Config != nil {
		anonymous = mergeSet(anonymous, img.Config.Volumes)
	}
	mounts, err := d.parseMounts(hc, anonymous)
	if err != nil {
		return out, err
	}
	rec := &containers.Record{
		ID: containers.NewID(), Name: name, Image: req.Config.Image, ImageID: imageID, Created: time.Now().UTC(),
		Path: args[0], Args: args[1:], Config: &cfg, HostConfig: hc, Driver: driverName, Mounts: mounts,
	}
	rec.SnapshotKey = "container-" + rec.ID
	undoMounts, err := d.createMounts(ctx, rec.ID, rec.Mounts)
	if err != nil {
		return out, err
	}
	if err := d.ctrs.Add(rec); err != nil {
		undoMounts()
		return out, err
	}
	if m := d.networkMode(hc.NetworkMode); (m == "host" || m == "none") && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		warnings = append(warnings, "Published ports are discarded when using "+m+" network mode")
	}
	if err := d.attachAtCreate(rec, req.NetworkingConfig); err == nil {
		_, err = d.ctrs.Update(rec.ID, func(r *containers.Record) error { r.HostConfig = rec.HostConfig; return nil })
	} else {
		undoMounts()
		return out, errors.Join(err, d.nets.Release(rec.ID), d.ctrs.Delete(rec.ID))
	}
	d.useImage(imageID, 1)
	if err := d.prepareRootfs(ctx, drv, rec, snapOpts...); err != nil {
		d.useImage(imageID, -1)
		undoMounts()
		return out, errors.Join(err, d.nets.Release(rec.ID), d.ctrs.Delete(rec.ID))
	}
	d.live(rec.ID)
	d.containerEvent(*rec, eventtypes.ActionCreate, nil)
	return container.CreateResponse{ID: rec.ID, Warnings: append([]string{}, warnings...)}, nil
}

// prepareRootfs unpacks the image into drv and prepares the container's
// active snapshot on its top layer.
func (d *Daemon) prepareRootfs(ctx context.Context, drv drivers.Driver, rec *containers.Record, opts ...drivers.Opt) error {
	d.unpackMu.RLock()
	defer d.unpackMu.RUnlock()
	top, err := d.images.Unpack(ctx, drv, rec.ImageID)
	if err != nil {
		return err
	}
	if _, err := drv.Prepare(ctx, rec.SnapshotKey, top, opts...); err != nil {
		return fmt.Errorf("rootfs of container %s: %w", rec.ID, err)
	}
	if err := os.MkdirAll(d.rootfs(rec.ID), 0o700); err != nil {
		return errors.Join(err, drv.Remove(context.WithoutCancel(ctx), rec.SnapshotKey))
	}
	return nil
}

// storageOpts reads a create request's --storage-opt: driver=NAME picks
// the container's driver (a layerlab extension), size=BYTES limits its
// snapshot (dockerd's option, units as dockerd's: 10G, 512M).
func (d *Daemon) storageOpts(opts map[string]string) (driver string, size int64, err error) {
	driver = d.cfg.DefaultDriver
	for k, v := range opts {
		switch k {
		case driverKey:
			driver = v
		case "size":
			if size, err = drivers.ParseSize("size", v); err != nil {
				return "", 0, err
			}
		default:
			return "", 0, fmt.Errorf("--storage-opt %s is not supported (driver=NAME and size=BYTES are): %w", k, drivers.ErrInvalidArgument)
		}
	}
	return driver, size, nil
}

// mergeEnv is the image's environment with the request's on top, by key.
func mergeEnv(image, req []string) []string {
	out := append([]string(nil), image...)
	for _, kv := range req {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool { e, _, _ = strings.Cut(e, "="); return e == k })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// InspectContainer answers GET /containers/{id}/json in dockerd's shape.
func (d *Daemon) InspectContainer(ctx context.Context, ref string) (container.InspectResponse, error) {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return container.InspectResponse{}, err
	}
	st := r.State
	state := &container.State{
		Status: st.Status, Running: isUp(st.Status), Restarting: st.Status == containers.Restarting,
		Paused: st.Status == containers.Paused, Dead: st.Status == containers.Dead, OOMKilled: st.OOMKilled,
		Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
		StartedAt: dockerTime(st.StartedAt), FinishedAt: dockerTime(st.FinishedAt), Health: st.Health,
	}
	return container.InspectResponse{
		ContainerJSONBase: &container.ContainerJSONBase{
			ID: r.ID, Created: r.Created.Format(time.RFC3339Nano), Path: r.Path, Args: nonNil(r.Args), State: state,
			Image: r.ImageID.String(), LogPath: d.inspectLogPath(r), Name: "/" + r.Name, Driver: r.Driver,
			Platform: "linux", HostConfig: r.HostConfig, GraphDriver: d.graphDriver(ctx, r), RestartCount: r.RestartCount,
		},
		Mounts: d.mountPoints(r), Config: r.Config,
		NetworkSettings: d.networkSettings(r),
	}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// dockerTime formats t as dockerd does, the zero time included.
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// graphDriver names the container's driver and, as dockerd's overlay2
// does, the directories of its rootfs, read from the snapshot's mounts.
func (d *Daemon) graphDriver(ctx context.Context, r containers.Record) storage.DriverData {
	data := map[string]string{"MergedDir": d.rootfs(r.ID)}
	if drv, ok := d.drivers[r.Driver]; ok {
		mounts, _ := drv.Mounts(ctx, r.SnapshotKey)
		for _, m := range mounts {
			if m.Type == "bind" || m.Type == "rbind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
				data["Dir"] = m.Source
			}
			for _, o := range m.Options {
				k, v, _ := strings.Cut(o, "=")
				switch k {
				case "lowerdir":
					data["LowerDir"] = v
				case "upperdir":
					data["UpperDir"] = v
				case "workdir":
					data["WorkDir"] = v
				}
			}
		}
	}
	return storage.DriverData{Name: r.Driver, Data: data}
}

// ListContainers answers GET /containers/json: running ones, or all.
func (d *Daemon) ListContainers(_ context.Context, all bool) ([]container.Summary, error) {
	recs, err := d.ctrs.List()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b containers.Record) int { return b.Created.Compare(a.Created) })
	out := []container.Summary{}
	for _, r := range recs {
		if !all && !isUp(r.State.Status) {
			continue
		}
		s := container.Summary{
			ID: r.ID, Names: []string{"/" + r.Name}, Image: r.Image, ImageID: r.ImageID.String(),
			Command: strings.Join(append([]string{r.Path}, r.Args...), " "), Created: r.Created.Unix(),
			Ports: d.summaryPorts(r), Labels: r.Config.Labels, State: r.State.Status, Status: statusText(r.State),
			Mounts: d.mountPoints(r),
		}
		s.HostConfig.NetworkMode = string(r.HostConfig.NetworkMode)
		out = append(out, s)
	}
	return out, nil
}

// statusText is ps's STATUS column, as dockerd words it.
func statusText(st containers.State) string {
	switch st.Status {
	case containers.Running:
		if st.Health != nil {
			return "Up " + units.HumanDuration(time.Since(st.StartedAt)) + " (" + health.Text(st.Health) + ")"
		}
		return "Up " + units.HumanDuration(time.Since(st.StartedAt))
	case containers.Paused:
		return "Up " + units.HumanDuration(time.Since(st.StartedAt)) + " (Paused)"
	case containers.Exited:
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case containers.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(time.Since(st.FinishedAt)))
	case containers.Dead:
		return "Dead"
	}
	return "Created"
}

// DeleteContainer answers DELETE /containers/{id}: a running container
// only with force (killed first); then its snapshot, logs and record go,
// and with volumes (rm -v) its anonymous volumes.
func (d *Daemon) DeleteContainer(ctx context.Context, ref string, force, volumes bool) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	if isUp(r.State.Status) {
		if !force {
			return fmt.Errorf("cannot remove container \"/%s\": container is %s: stop the container before removing or force remove: %w", r.Name, r.State.Status, drivers.ErrFailedPrecondition)
		}
		// A user's kill: no restart policy brings it back meanwhile.
		d.manualStop(r.ID, l, true)
		if err := d.killAndWait(ctx, l); err != nil {
			return err
		}
		if r.HostConfig.AutoRemove {
			return nil // its end removed it
		}
	}
	return d.remove(ctx, r.ID, volumes)
}

// remove deletes a container that does not run: its snapshot, directory
// and record, then tells the waiters for "removed". Its anonymous volumes
// go with volumes or AutoRemove (run --rm), as in dockerd.
func (d *Daemon) remove(ctx context.Context, id string, volumes bool) error {
	r, err := d.ctrs.Get(id)
	if err != nil {
		return err
	}
	if drv, ok := d.drivers[r.Driver]; ok {
		if err := drv.Remove(ctx, r.SnapshotKey); err != nil && !errors.Is(err, drivers.ErrNotFound) {
			return fmt.Errorf("removing the rootfs of container %s: %w", r.Name, err)
		}
	}
	// One by one, never RemoveAll: a rootfs still mounted must not be
	// emptied.
	if err := logs.Remove(d.logInfo(r)); err != nil {
		return err
	}
	for _, p := range []string{d.rootfs(r.ID), filepath.Join(d.containerDir(r.ID), "hosts"), filepath.Join(d.containerDir(r.ID), "resolv.conf"),
		filepath.Join(d.containerDir(r.ID), "hostname"), d.containerDir(r.ID)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := d.nets.Release(r.ID); err != nil {
		return fmt.Errorf("releasing the network addresses of container %s: %w", r.Name, err)
	}
	if err := d.ctrs.Delete(r.ID); err != nil {
		return err
	}
	d.useImage(r.ImageID, -1)
	if err := d.releaseVolumes(ctx, r, volumes || r.HostConfig.AutoRemove); err != nil {
		d.cfg.Log.Error("removing a container's anonymous volumes failed; docker volume rm them", "container", r.ID, "err", err)
	}
	d.execs.drop(r.ID)
	d.containerEvent(r, eventtypes.ActionDestroy, nil)
	d.mu.Lock()
	l := d.lives[r.ID]
	delete(d.lives, r.ID)
	d.mu.Unlock()
	if l != nil {
		close(l.removed)
	}
	return nil
}
