// Package daemon wires layerlabd together: it takes the data root (one
// daemon per root, by an exclusive flock), opens the enabled storage
// drivers each in its own home, the daemon's one bbolt state file and the
// image store, and answers the API's calls (runtime/api.Backend).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types"
	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/events"
	"github.com/layerlab/layerlab/runtime/executor"
	"github.com/layerlab/layerlab/runtime/images"
	"github.com/layerlab/layerlab/runtime/logs"
	"github.com/layerlab/layerlab/runtime/metrics"
	"github.com/layerlab/layerlab/runtime/network"
	"github.com/layerlab/layerlab/runtime/registry"
	"github.com/layerlab/layerlab/runtime/volumes"
)

// Config is what layerlabd was asked to run with.
type Config struct {
	Registry      *drivers.Registry
	DataRoot      string
	ExecRoot      string
	DefaultDriver string                     // --storage-driver
	Drivers       []string                   // --storage-drivers; the default is added when missing
	Options       map[string]drivers.Options // per driver; "home" moves the driver's home
	Version       string                     // layerlabd's own version
	Commit        string
	Debug         bool
	Runtime       string            // "libcontainer" (the default) or "runc"
	CgroupParent  string            // where containers' cgroups go; "" for /layerlab
	LogDriver     string            // --log-driver: new containers' default; "" for json-file
	LogOpts       map[string]string // --log-opt: the default driver's options
	// Bridge is the default bridge network's Linux bridge ("":
	// DefaultBridge); "none" has no default bridge network, so
	// containers get network none by default.
	Bridge string
	// NATPorts publishes ports by nftables DNAT in the daemon's
	// namespace instead of the userland proxy (--userland-proxy=false).
	NATPorts bool
	Log      *slog.Logger // what the daemon does on its own (nil: slog's default)
	// Registries is --insecure-registry and --registry-certs-dir.
	Registries registry.Config
	// Metrics, when --metrics-addr is set, times the drivers and reads
	// the containers' cgroups at scrape time (nil: no metrics).
	Metrics *metrics.Metrics
}

// Daemon holds what layerlabd opened. Its methods are the API's Backend.
type Daemon struct {
	cfg     Config
	lock    *os.File
	db      *bolt.DB
	drivers map[string]drivers.Driver
	names   []string
	images  *images.Store
	ctrs    *containers.Store
	exec    executor.Executor
	events  *events.Bus // every state change, for GET /events (events.go)
	limits  hostLimits  // what the host's cgroups can limit (limits.go)
	stats   statsState  // docker stats' cgroup reader and CPU sampler (stats.go)
	vols    *volumes.Store
	nets    *network.Store
	host    *network.Host     // netlink in the daemon's network namespace
	dns     *network.Resolver // user bridges' embedded DNS servers
	nat     *network.NAT      // nil: no nftables here (no outbound NAT; the userland proxy publishes)
	reg     *registry.Service // pull, push, login (registry.go)

	// unpackMu: a rootfs is unpacked and prepared under it for reading,
	// unused layers are collected under it for writing (layergc.go).
	unpackMu sync.RWMutex
	mu       sync.Mutex       // guards lives and imageUse; never held across a db transaction
	lives    map[string]*live // by container ID
	// imageUse counts the containers of each image, so rmi refuses an
	// image in use; in memory because the image store asks inside its
	// own write transaction.
	imageUse map[digest.Digest]int
	execs    execStore // docker exec's records, in memory as dockerd's (exec.go)
	// netStates are the running containers' port proxies, by ID.
	netStates map[string]*netState
	closing   atomic.Bool // set by Close: no restart policy acts any more
	// streamsEnd closes when the daemon shuts down (EndStreams): the
	// streams that would run for ever (events, docker stats) end.
	streamsEnd     chan struct{}
	endStreamsOnce sync.Once
}

var _ api.Backend = (*Daemon)(nil)

// ErrLocked is a data root another daemon holds.
var ErrLocked = fmt.Errorf("data root in use: %w", drivers.ErrUnavailable)

// New opens everything cfg names. On error whatever it opened is closed.
func New(ctx context.Context, cfg Config) (_ *Daemon, err error) {
	if !filepath.IsAbs(cfg.DataRoot) || !filepath.IsAbs(cfg.ExecRoot) {
		return nil, fmt.Errorf("--data-root %q and --exec-root %q must be absolute paths: %w", cfg.DataRoot, cfg.ExecRoot, drivers.ErrInvalidArgument)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if p := cfg.CgroupParent; p != "" && (!filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/") {
		return nil, fmt.Errorf("--cgroup-parent %q: want a clean absolute path below the cgroup roots, e.g. /layerlab: %w", p, drivers.ErrInvalidArgument)
	}
	switch cfg.Runtime {
	case "":
		cfg.Runtime = "libcontainer"
	case "libcontainer", "runc":
	default:
		return nil, fmt.Errorf("--runtime %q: want libcontainer (in process) or runc (the runc binary): %w", cfg.Runtime, drivers.ErrInvalidArgument)
	}
	if err := checkLogDefaults(&cfg); err != nil {
		return nil, err
	}
	if cfg.DefaultDriver == "" {
		return nil, fmt.Errorf("no default storage driver: %w", drivers.ErrInvalidArgument)
	}
	if !slices.Contains(cfg.Drivers, cfg.DefaultDriver) {
		cfg.Drivers = append([]string{cfg.DefaultDriver}, cfg.Drivers...)
	}
	for name := range cfg.Options {
		if !slices.Contains(cfg.Drivers, name) {
			return nil, fmt.Errorf("--storage-opt for %s, which is not enabled (enabled: %s): %w", name, strings.Join(cfg.Drivers, ", "), drivers.ErrInvalidArgument)
		}
	}
	for _, dir := range []string{cfg.DataRoot, cfg.ExecRoot} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
	}
	d := &Daemon{cfg: cfg, drivers: map[string]drivers.Driver{}, lives: map[string]*live{}, imageUse: map[digest.Digest]int{}, netStates: map[string]*netState{}, events: events.New(0), streamsEnd: make(chan struct{})}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
		}
	}()
	if d.reg, err = registry.New(cfg.Registries); err != nil {
		return nil, err
	}
	if d.lock, err = lockRoot(cfg.DataRoot); err != nil {
		return nil, err
	}
	if err := d.openDrivers(ctx); err != nil {
		return nil, err
	}
	if d.db, err = bolt.Open(filepath.Join(cfg.DataRoot, "layerlabd.db"), 0o600, nil); err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	if d.images, err = images.New(filepath.Join(cfg.DataRoot, "image"), d.db, images.WithInUse(d.imageInUse), images.WithApplied(d.layerApplied)); err != nil {
		return nil, err
	}
	if d.ctrs, err = containers.New(d.db); err != nil {
		return nil, err
	}
	recs, err := d.ctrs.List()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		d.useImage(r.ImageID, 1)
	}
	if err := d.openVolumes(recs); err != nil {
		return nil, err
	}
	if err := d.openNetworks(); err != nil {
		return nil, err
	}
	if d.exec, err = newExecutor(cfg); err != nil {
		return nil, err
	}
	if err := d.recover(ctx); err != nil {
		return nil, fmt.Errorf("recovering the containers a previous daemon left: %w", err)
	}
	if err := d.sweepNetwork(); err != nil {
		return nil, fmt.Errorf("removing the network namespaces and veths a previous daemon left: %w", err)
	}
	// Layers whose images went while the daemon was down, or before it
	// collected them.
	d.collect(ctx)
	if err := d.vols.Recover(); err != nil {
		return nil, fmt.Errorf("unmounting the volumes a previous daemon left mounted: %w", err)
	}
	if cfg.Metrics != nil {
		cfg.Metrics.Containers(d.metricContainers())
	}
	d.restartOnBoot(ctx)
	return d, nil
}

// newExecutor opens the executor cfg.Runtime names, its state under the
// exec root.
func newExecutor(cfg Config) (executor.Executor, error) {
	switch cfg.Runtime {
	case "libcontainer":
		return executor.NewLibcontainer(filepath.Join(cfg.ExecRoot, "libcontainer"), cfg.CgroupParent)
	case "runc":
		return executor.NewRunc("runc", filepath.Join(cfg.ExecRoot, "runc"), cfg.CgroupParent)
	}
	return nil, fmt.Errorf("--runtime %q: %w", cfg.Runtime, drivers.ErrInvalidArgument)
}

// lockRoot takes the data root's lock file and writes our pid in it, so a
// second daemon can name the holder.
func lockRoot(root string) (*os.File, error) {
	path := filepath.Join(root, "layerlabd.pid")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		who := "another process"
		if pid := strings.TrimSpace(string(holder)); pid != "" {
			who = "another layerlabd (pid " + pid + ")"
		}
		return nil, fmt.Errorf("data root %s is in use by %s: %w; stop it or give this one another --data-root", root, who, ErrLocked)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// openDrivers opens each enabled driver in DATA-ROOT/NAME, or where its
// "home" option puts it.
func (d *Daemon) openDrivers(ctx context.Context) error {
	for _, name := range d.cfg.Drivers {
		opts := drivers.Options{}
		for k, v := range d.cfg.Options[name] {
			opts[k] = v
		}
		home := filepath.Join(d.cfg.DataRoot, name)
		if h, ok := opts["home"]; ok {
			home = h
			delete(opts, "home")
		}
		drv, err := d.cfg.Registry.Open(ctx, name, home, opts)
		if err != nil {
			return fmt.Errorf("storage driver %s cannot open with its home at %s: %w (set --storage-opt %s.home=DIR to move it, or leave %s out of --storage-drivers)", name, home, err, name, name)
		}
		drv = d.instrument(name, drv)
		d.drivers[name] = drv
		d.names = append(d.names, name)
		if err := images.RemoveUnfinished(ctx, drv); err != nil {
			return fmt.Errorf("storage driver %s: %w", name, err)
		}
	}
	return nil
}

// Driver returns the enabled driver name.
func (d *Daemon) Driver(name string) (drivers.Driver, error) {
	drv, ok := d.drivers[name]
	if !ok {
		return nil, fmt.Errorf("storage driver %q is not enabled (enabled: %s): %w", name, strings.Join(d.names, ", "), drivers.ErrInvalidArgument)
	}
	return drv, nil
}

// Images returns the image store.
func (d *Daemon) Images() *images.Store { return d.images }

// Close stops the running containers, then closes the drivers, the state
// file and the lock.
func (d *Daemon) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d.closing.Store(true)
	d.cancelRestarts()
	errs := []error{d.StopAll(ctx)}
	if d.host != nil {
		errs = append(errs, d.removeBridges())
		d.host.Close()
		d.host = nil
	}
	d.EndStreams()
	d.stats.close()
	if d.exec != nil {
		errs = append(errs, d.exec.Close())
	}
	for _, name := range d.names {
		errs = append(errs, d.drivers[name].Close())
	}
	d.names = nil
	if d.db != nil {
		errs = append(errs, d.db.Close())
		d.db = nil
	}
	if d.lock != nil {
		errs = append(errs, d.lock.Close())
		d.lock = nil
	}
	return errors.Join(errs...)
}

// Version answers GET /version.
func (d *Daemon) Version(context.Context) types.Version {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	kernel := unix.ByteSliceToString(uts.Release[:])
	v := types.Version{
		Version: d.cfg.Version, APIVersion: api.MaxVersion, MinAPIVersion: api.MinVersion,
		GitCommit: d.cfg.Commit, GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH,
		KernelVersion: kernel,
	}
	v.Platform.Name = "layerlab"
	v.Components = []types.ComponentVersion{{Name: "Engine", Version: d.cfg.Version, Details: map[string]string{
		"ApiVersion": api.MaxVersion, "MinAPIVersion": api.MinVersion, "GitCommit": d.cfg.Commit,
		"GoVersion": runtime.Version(), "Os": runtime.GOOS, "Arch": runtime.GOARCH, "KernelVersion": kernel,
	}}}
	return v
}

// Info answers GET /info: the default driver with its capabilities, and
// every enabled driver.
func (d *Daemon) Info(context.Context) (system.Info, error) {
	caps := d.drivers[d.cfg.DefaultDriver].Capabilities()
	status := [][2]string{
		{"Strategy", string(caps.Strategy)},
		{"Granularity", string(caps.Granularity)},
		{"Quota", drivers.YesNo(caps.Quota)},
	}
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Join(d.cfg.DataRoot, d.cfg.DefaultDriver), &st); err == nil {
		status = append(status, [2]string{"Backing Filesystem", fsName(st.Type)})
	}
	status = append(status, [2]string{"Enabled Drivers", strings.Join(d.names, ",")})
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	host, _ := os.Hostname()
	var si unix.Sysinfo_t
	_ = unix.Sysinfo(&si)
	info := system.Info{
		ID: "layerlabd", Images: d.images.Count(),
		Driver: d.cfg.DefaultDriver, DriverStatus: status,
		Name: host, ServerVersion: d.cfg.Version, OperatingSystem: "layerlab", OSType: runtime.GOOS,
		Architecture: runtime.GOARCH, KernelVersion: unix.ByteSliceToString(uts.Release[:]),
		NCPU: runtime.NumCPU(), MemTotal: int64(si.Totalram) * int64(si.Unit), DockerRootDir: d.cfg.DataRoot, Debug: d.cfg.Debug,
		LoggingDriver: d.cfg.LogDriver, Plugins: system.PluginsInfo{Log: logs.Drivers()}, CgroupDriver: "cgroupfs", DefaultRuntime: d.cfg.Runtime,
		IndexServerAddress: "https://index.docker.io/v1/", RegistryConfig: d.registryConfig(),
		// Both executors are built in; --runtime picks the one used.
		Runtimes: map[string]system.RuntimeWithStatus{
			"libcontainer": {Runtime: system.Runtime{Path: "(in process)"}},
			"runc":         {Runtime: system.Runtime{Path: "runc"}},
		},
	}
	// The debug figures docker info prints with -D.
	info.NGoroutines, info.NEventsListener = runtime.NumGoroutine(), d.events.Listeners()
	info.SystemTime = time.Now().Format(time.RFC3339Nano)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		info.NFd = len(fds)
	}
	recs, err := d.ctrs.List()
	if err != nil {
		return info, err
	}
	for _, r := range recs {
		info.Containers++
		switch r.State.Status {
		case containers.Running, containers.Restarting:
			info.ContainersRunning++
		case containers.Paused:
			info.ContainersPaused++
		default:
			info.ContainersStopped++
		}
	}
	return info, nil
}

// useImage adds n to the count of containers using image id.
func (d *Daemon) useImage(id digest.Digest, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.imageUse[id] += n
	if d.imageUse[id] <= 0 {
		delete(d.imageUse, id)
	}
}

func (d *Daemon) imageInUse(id digest.Digest) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.imageUse[id] > 0
}

// fsName names the filesystems layerlab's drivers sit on.
func fsName(magic int64) string {
	switch magic {
	case unix.EXT4_SUPER_MAGIC:
		return "extfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("0x%x", magic)
}

// The image calls delegate to the store.

func (d *Daemon) LoadImages(ctx context.Context, r io.Reader) ([]images.Loaded, error) {
	loaded, err := d.images.Load(ctx, r)
	for _, l := range loaded {
		d.imageEvent(eventtypes.ActionLoad, l.ID.String(), l.Ref)
	}
	return loaded, err
}

func (d *Daemon) SaveImages(ctx context.Context, w io.Writer, names []string) error {
	if err := d.images.Save(ctx, w, names); err != nil {
		return err
	}
	for _, n := range names {
		if id, err := d.images.Resolve(n); err == nil {
			d.imageEvent(eventtypes.ActionSave, id.String(), n)
		}
	}
	return nil
}

func (d *Daemon) ListImages(_ context.Context, f filters.Args, all bool) ([]image.Summary, error) {
	list, err := d.images.List(f)
	if err != nil || all {
		return list, err
	}
	// As dockerd: an untagged image another was built on (a build's
	// intermediate step) shows only with docker images -a.
	parents := map[string]bool{}
	for _, s := range list {
		parents[s.ParentID] = true
	}
	return slices.DeleteFunc(list, func(s image.Summary) bool { return len(s.RepoTags)+len(s.RepoDigests) == 0 && parents[s.ID] }), nil
}

func (d *Daemon) InspectImage(_ context.Context, name string) (image.InspectResponse, error) {
	return d.images.Inspect(name)
}

func (d *Daemon) ImageHistory(_ context.Context, name string) ([]image.HistoryResponseItem, error) {
	return d.images.History(name)
}

func (d *Daemon) TagImage(_ context.Context, name, ref string) error {
	if err := d.images.Tag(name, ref); err != nil {
		return err
	}
	id, err := d.images.Resolve(ref)
	if err == nil {
		norm, _ := images.NormalizeRef(ref)
		d.imageEvent(eventtypes.ActionTag, id.String(), norm)
	}
	return nil
}

// DeleteImage removes name. The prune flag (dockerd's: delete the untagged
// parents too) is not acted on: an image is deleted alone, and a
// committed image's untagged parent goes with docker image prune.
func (d *Daemon) DeleteImage(ctx context.Context, name string, force, _ bool) ([]image.DeleteResponse, error) {
	out, err := d.deleteImage(name, force)
	if deleted(out) {
		d.collect(ctx)
	}
	return out, err
}

// deleted says whether an image delete removed an image (not only a tag).
func deleted(steps []image.DeleteResponse) bool {
	for _, s := range steps {
		if s.Deleted != "" {
			return true
		}
	}
	return false
}

// collect runs collectLayers and logs what it could not remove: the image
// operation that asked for it has succeeded whatever happens here, and the
// next collection tries again.
func (d *Daemon) collect(ctx context.Context) int64 {
	freed, err := d.collectLayers(ctx)
	if err != nil {
		d.cfg.Log.Warn("removing layers no image needs failed; the next image delete or daemon start tries again", "err", err)
	}
	return freed
}

// deleteImage is DeleteImage without the layer collection, which the
// prunes run once at their end.
func (d *Daemon) deleteImage(name string, force bool) ([]image.DeleteResponse, error) {
	id, _ := d.images.Resolve(name) // for the untag events, before the name goes
	steps, err := d.images.Delete(name, force)
	var out []image.DeleteResponse
	for _, s := range steps {
		out = append(out, image.DeleteResponse{Untagged: s.Untagged, Deleted: s.Deleted.String()})
		switch {
		case s.Untagged != "":
			d.imageEvent(eventtypes.ActionUnTag, id.String(), s.Untagged)
		case s.Deleted != "":
			d.imageEvent(eventtypes.ActionDelete, s.Deleted.String(), "")
		}
	}
	return out, err
}
