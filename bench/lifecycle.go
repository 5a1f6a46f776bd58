package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerlab/layerlab/drivers/layer"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/runtime/executor"
)

// lifecycleNote says once per run what each lifecycle op includes.
const lifecycleNote = "lifecycle: a container's whole life, create + start + wait + delete of busybox `true` (network none). " +
	"api-run goes through layerlabd's Docker API (raw HTTP 1.41 on its unix socket; layerlabd started by the bench in a mount+network namespace of its own, " +
	"data and exec roots on the target's backing filesystem, the target's driver with its own home there) and includes everything the daemon does: " +
	"the container record, the snapshot's prepare+mount, libcontainer create/start, the wait, and delete with unmount and remove; api-create, api-start, api-wait and api-delete are its parts. " +
	"bare-run is the same life with runc's libcontainer in the bench's own process on the same driver: prepare a child of the committed busybox layer, mount, create/start/wait/delete, unmount, remove; " +
	"bare-exec is its libcontainer part alone (create to delete). " +
	"api-run-bridge and api-run-nonet alternate the api-run life on a user bridge network the bench creates (netns, veth pair, address, /etc files) and on network none; " +
	"their api-create-, api-start-, api-wait- and api-delete- parts (suffix -bridge or -nonet) say where networking costs: the namespace, veth and address are made at create and go at delete. " +
	"cli-run is the wall time of `docker run --rm busybox true` (/usr/local/bin/docker) against that layerlabd, the CLI process included; " +
	"dockerd-cli-run is the same command against Debian's dockerd as installed (overlay2 on the same backing filesystem, the default bridge network: docker0 and iptables inside a mount+network namespace the bench made), " +
	"dockerd-nonet-cli-run against a second dockerd with --bridge=none --iptables=false (no network setup, as layerlabd's network none); both only on overlay2 targets and when dockerd is installed. " +
	"rss-idle is layerlabd's VmRSS after the image load; rss-10-running with 10 `sleep 1000` containers running, rss-per-container the increase over the idle daemon (measured just before) divided by 10. " +
	"bare-run-cpu and api-run-cpu are the CPU time (user+system, reaped children included: the containers' init) per timed run of the bench's process and of layerlabd, from /proc/PID/stat in 10 ms ticks; the bench's own share of api-run (its HTTP client) is not in api-run-cpu. " +
	"start-50 is the latency of each start API call when 50 created `sleep 1000` containers are started at once; compare its p99 to api-start's median"

// lifecycle measures containers' lives on target t: in process with
// libcontainer, through layerlabd's API and through the docker CLI (see
// lifecycleNote).
func lifecycle(ctx context.Context, r *run, t *target) error {
	r.noteOnce("lifecycle", lifecycleNote)
	dir, done, err := workloadDir(t, "lifecycle")
	if err != nil {
		return err
	}
	defer done()
	img, archive, err := busyboxArchive(ctx, dir)
	if err != nil {
		return err
	}
	bareErr := bareRuns(ctx, r, t, img, dir)
	return errors.Join(bareErr, daemonRuns(ctx, r, t, dir, archive))
}

// bareCgroupParent keeps the bench's own containers apart from layerlabd's.
const bareCgroupParent = "/layerlab-bench"

// daemonCgroupParent is the bench's layerlabd's.
const daemonCgroupParent = "/layerlab-bench-daemon"

// bareRuns times bare-run (and its bare-exec part) N times after the
// warm-up, on a committed layer holding the busybox image.
func bareRuns(ctx context.Context, r *run, t *target, img v1.Image, dir string) error {
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return fmt.Errorf("busybox image layers: %v", err)
	}
	base, err := t.layer(ctx, "", func(d string) error {
		rc, err := layers[0].Uncompressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = layer.Apply(ctx, d, rc)
		return err
	})
	if err != nil {
		return fmt.Errorf("busybox layer: %w", err)
	}
	ex, err := executor.NewLibcontainer(filepath.Join(dir, "bare", "libcontainer"), bareCgroupParent)
	if err != nil {
		return err
	}
	defer ex.Close()
	p := func(op string) point { return point{Workload: "lifecycle", Op: op, Target: t.info.ID} }
	cpu := cpuMeter{pid: os.Getpid()}
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		if i == r.prof.Warmup {
			if err := cpu.begin(); err != nil {
				return err
			}
		}
		rec := r.recorderFor(i)
		var exec time.Duration
		if err := rec.time(p("bare-run"), func() (err error) {
			exec, err = bareOnce(ctx, ex, t, base, fmt.Sprintf("bare%d", i))
			return err
		}); err != nil {
			return err
		}
		rec.add(point{Workload: "lifecycle", Op: "bare-exec", Target: t.info.ID, Unit: "ns"}, float64(exec))
	}
	return cpu.end(r.rec, p("bare-run-cpu"), r.prof.N)
}

// bareOnce is one container's life on its own snapshot of base; it
// returns how long the libcontainer part took. On failure it undoes what
// it did.
func bareOnce(ctx context.Context, ex *executor.Libcontainer, t *target, base, id string) (exec time.Duration, err error) {
	var undo []func() error
	defer func() {
		if err != nil {
			// A fresh context: the teardown of a cancelled run too.
			for i := len(undo) - 1; i >= 0; i-- {
				err = errors.Join(err, undo[i]())
			}
		}
	}()
	key := t.key("bare")
	ms, err := t.d.Prepare(ctx, key, base)
	if err != nil {
		return 0, err
	}
	undo = append(undo, func() error { return t.d.Remove(context.WithoutCancel(ctx), key) })
	rootfs, err := t.dir(key)
	if err != nil {
		return 0, err
	}
	if err := mount.All(ms, rootfs); err != nil {
		return 0, err
	}
	undo = append(undo, func() error { return mount.UnmountAll(rootfs) })
	spec, err := executor.DefaultSpec([]string{"true"}, rootfs, executor.SpecOpts{Hostname: id})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	c, err := ex.Create(ctx, id, spec, executor.Stdio{})
	if err != nil {
		return 0, err
	}
	undo = append(undo, func() error { return c.Delete(context.WithoutCancel(ctx)) })
	if err := c.Start(ctx); err != nil {
		return 0, err
	}
	exit, err := c.Wait(ctx)
	if err != nil {
		return 0, err
	}
	if exit.Code != 0 {
		return 0, fmt.Errorf("bare-run: true exited %d", exit.Code)
	}
	undo = undo[:len(undo)-1]
	if err := c.Delete(ctx); err != nil {
		return 0, err
	}
	exec = time.Since(start)
	undo = undo[:len(undo)-1]
	if err := mount.UnmountAll(rootfs); err != nil {
		return 0, err
	}
	os.Remove(rootfs)
	undo = nil
	return exec, t.d.Remove(ctx, key)
}

// daemonRuns starts a layerlabd for t, loads the busybox archive and
// measures api-run, cli-run (next to the dockerd peer where it runs), the
// daemon's RSS and start-50; the daemon is stopped at the end, also on
// failure or cancellation.
func daemonRuns(ctx context.Context, r *run, t *target, dir, archive string) (err error) {
	ll, err := startLayerlabd(ctx, r, t, dir, "lifecycle", "api-run, cli-run, rss and start-50")
	if err != nil || ll == nil {
		return err
	}
	defer func() { err = errors.Join(err, ll.stop()) }()
	sock, sockDir := ll.sock, ll.sockDir
	cliConfig := filepath.Join(sockDir, "docker-config")
	c := newAPIClient(sock)
	defer c.close()
	if err := c.load(ctx, archive); err != nil {
		return err
	}
	if err := recordRSS(ctx, r, t, ll.pid(), "rss-idle"); err != nil {
		return err
	}
	if err := apiRuns(ctx, r, t, c, ll.pid()); err != nil {
		return err
	}
	if err := bridgeRuns(ctx, r, t, c); err != nil {
		return err
	}
	var peers []peer
	for _, bridge := range []bool{false, true} {
		p, perr := startPeer(ctx, r, t, dir, sockDir, archive, bridge)
		if perr != nil {
			return perr
		}
		if p == nil {
			continue
		}
		defer func() { err = errors.Join(err, p.d.stop()) }()
		peers = append(peers, *p)
	}
	if err := cliRuns(ctx, r, t, sock, cliConfig, peers); err != nil {
		return err
	}
	if err := rssRunning(ctx, r, t, c, ll.pid()); err != nil {
		return err
	}
	return start50(ctx, r, t, c)
}

// recordRSS records the daemon's RSS three times, 200 ms apart, after a
// second of quiet.
func recordRSS(ctx context.Context, r *run, t *target, pid int, op string) error {
	for i := 0; i < 3; i++ {
		wait := 200 * time.Millisecond
		if i == 0 {
			wait = time.Second
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		rss, err := rssBytes(pid)
		if err != nil {
			return err
		}
		r.rec.add(point{Workload: "lifecycle", Op: op, Target: t.info.ID, Unit: "bytes"}, float64(rss))
	}
	return nil
}

// apiRuns times api-run and its parts.
func apiRuns(ctx context.Context, r *run, t *target, c *apiClient, pid int) error {
	p := func(op string) point { return point{Workload: "lifecycle", Op: op, Target: t.info.ID, Unit: "ns"} }
	cpu := cpuMeter{pid: pid}
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		if i == r.prof.Warmup {
			if err := cpu.begin(); err != nil {
				return err
			}
		}
		rec := r.recorderFor(i)
		var parts [4]time.Duration
		if err := rec.time(p("api-run"), func() (err error) { parts, err = apiOnce(ctx, c); return err }); err != nil {
			return err
		}
		for j, op := range []string{"api-create", "api-start", "api-wait", "api-delete"} {
			rec.add(p(op), float64(parts[j]))
		}
	}
	return cpu.end(r.rec, p("api-run-cpu"), r.prof.N)
}

type createdContainer struct {
	ID string `json:"Id"`
}

// create makes a busybox container running args, with no network.
func (c *apiClient) create(ctx context.Context, args ...string) (string, error) {
	return c.createOn(ctx, "none", args...)
}

// createOn makes a busybox container running args on network.
func (c *apiClient) createOn(ctx context.Context, network string, args ...string) (string, error) {
	req := container.CreateRequest{
		Config:     &container.Config{Image: "busybox", Cmd: args},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(network)},
	}
	var out createdContainer
	if err := c.do(ctx, http.MethodPost, "/containers/create", req, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", fmt.Errorf("create: no container ID in the answer")
	}
	return out.ID, nil
}

// remove force-removes containers (a fresh context: also a teardown).
func (c *apiClient) remove(ctx context.Context, ids ...string) error {
	var errs []error
	for _, id := range ids {
		errs = append(errs, c.do(context.WithoutCancel(ctx), http.MethodDelete, "/containers/"+id+"?force=1", nil, nil))
	}
	return errors.Join(errs...)
}

// apiOnce is one container's life through the API; it returns the time
// of its create, start, wait and delete.
func apiOnce(ctx context.Context, c *apiClient) (parts [4]time.Duration, err error) {
	return apiOnceOn(ctx, c, "none")
}

// apiOnceOn is apiOnce with the container on network.
func apiOnceOn(ctx context.Context, c *apiClient, network string) (parts [4]time.Duration, err error) {
	t0 := time.Now()
	id, err := c.createOn(ctx, network, "true")
	if err != nil {
		return parts, err
	}
	t1 := time.Now()
	if err := c.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil); err != nil {
		return parts, errors.Join(err, c.remove(ctx, id))
	}
	t2 := time.Now()
	var w container.WaitResponse
	if err := c.do(ctx, http.MethodPost, "/containers/"+id+"/wait?condition=not-running", nil, &w); err != nil {
		return parts, errors.Join(err, c.remove(ctx, id))
	}
	if w.StatusCode != 0 || w.Error != nil {
		return parts, errors.Join(fmt.Errorf("true exited %d (%+v)", w.StatusCode, w.Error), c.remove(ctx, id))
	}
	t3 := time.Now()
	if err := c.do(ctx, http.MethodDelete, "/containers/"+id, nil, nil); err != nil {
		return parts, err
	}
	return [4]time.Duration{t1.Sub(t0), t2.Sub(t1), t3.Sub(t2), time.Since(t3)}, nil
}

// peer is a dockerd the lifecycle compares with, and the op its runs are
// recorded under.
type peer struct {
	op string
	d  *nsDaemon
}

// cliRuns times `docker run --rm busybox true` against layerlabd and,
// alternating with it so all see the same machine, against the dockerd
// peers.
func cliRuns(ctx context.Context, r *run, t *target, sock, config string, peers []peer) error {
	if _, err := os.Stat(dockerCLI); err != nil {
		r.noteOnce("lifecycle-no-cli", fmt.Sprintf("lifecycle: cli-run and dockerd-cli-run not measured: %v", err))
		return nil
	}
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		rec := r.recorderFor(i)
		if err := rec.time(point{Workload: "lifecycle", Op: "cli-run", Target: t.info.ID}, func() error { return cliRun(ctx, sock, config) }); err != nil {
			return err
		}
		for _, p := range peers {
			if err := rec.time(point{Workload: "lifecycle", Op: p.op, Target: t.info.ID}, func() error { return cliRun(ctx, p.d.sock, config) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// startRunning creates and starts n `sleep 1000` containers and returns
// their IDs (those it made, also on failure).
func startRunning(ctx context.Context, c *apiClient, n int) ([]string, error) {
	var ids []string
	for i := 0; i < n; i++ {
		id, err := c.create(ctx, "sleep", "1000")
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
		if err := c.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil); err != nil {
			return ids, err
		}
	}
	return ids, nil
}

// rssRunning records the daemon's RSS with 10 containers running and the
// increase per container over the RSS just before they started.
func rssRunning(ctx context.Context, r *run, t *target, c *apiClient, pid int) (err error) {
	const n = 10
	before, err := rssBytes(pid)
	if err != nil {
		return err
	}
	ids, err := startRunning(ctx, c, n)
	defer func() { err = errors.Join(err, c.remove(ctx, ids...)) }()
	if err != nil {
		return err
	}
	if err := recordRSS(ctx, r, t, pid, "rss-10-running"); err != nil {
		return err
	}
	after, err := rssBytes(pid)
	if err != nil {
		return err
	}
	r.rec.add(point{Workload: "lifecycle", Op: "rss-per-container", Target: t.info.ID, Unit: "bytes"}, float64(after-before)/n)
	return nil
}

// start50 creates 50 `sleep 1000` containers, starts them all at once and
// records each start call's latency.
func start50(ctx context.Context, r *run, t *target, c *apiClient) (err error) {
	const n = 50
	var ids []string
	defer func() { err = errors.Join(err, c.remove(ctx, ids...)) }()
	for i := 0; i < n; i++ {
		id, err := c.create(ctx, "sleep", "1000")
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			s := time.Now()
			errs[i] = c.do(ctx, http.MethodPost, "/containers/"+id+"/start", nil, nil)
			lat[i] = time.Since(s)
		}()
	}
	close(gate)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("start-50: %w", err)
	}
	for _, l := range lat {
		r.rec.add(point{Workload: "lifecycle", Op: "start-50", Target: t.info.ID, Param: "containers", Value: n, Unit: "ns"}, float64(l))
	}
	return nil
}

// startPeer starts Debian's dockerd as the peer of an overlay2 target on
// ext4 or xfs, when it is installed, and loads the busybox archive into
// it; nil when there is no peer for t. With bridge it runs as installed
// (a container gets the default bridge network, through docker0 and
// iptables in the peer's own network namespace): dockerd-cli-run, what
// `docker run --rm` costs a dockerd user; without, --bridge=none:
// dockerd-nonet-cli-run, the closer match of layerlabd's network none.
func startPeer(ctx context.Context, r *run, t *target, dir, sockDir, archive string, bridge bool) (*peer, error) {
	if t.info.Driver != "overlay2" || (t.info.Backing != "ext4" && t.info.Backing != "xfs") {
		return nil, nil
	}
	bin, err := findBinary("dockerd")
	if err != nil {
		r.noteOnce("lifecycle-no-dockerd", fmt.Sprintf("lifecycle: dockerd-cli-run (the dockerd peer) not measured: %v (make setup installs docker.io)", err))
		return nil, nil
	}
	name, op, netFlags := "dockerd-nonet", "dockerd-nonet-cli-run", []string{"--bridge=none", "--iptables=false", "--ip6tables=false"}
	if bridge {
		name, op, netFlags = "dockerd", "dockerd-cli-run", nil
	}
	root := filepath.Join(dir, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, name+".json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o644); err != nil {
		return nil, err
	}
	// Each peer its own parent cgroup, so each removes only its own.
	created := newCgroups(name)
	sock := filepath.Join(sockDir, name+".sock")
	// A tmpfs on /run in its namespace holds its exec root and plugin
	// sockets and hides any system containerd, so it starts its own; one
	// on /etc/docker (docker.io makes it) takes the key.json it writes.
	setup := "mount -t tmpfs -o mode=0755 tmpfs /run; if [ -d /etc/docker ]; then mount -t tmpfs -o mode=0755 tmpfs /etc/docker; fi"
	args := append([]string{"-H", "unix://" + sock, "--data-root", root, "--exec-root", "/run/docker", "--pidfile", "/run/docker.pid",
		"--config-file", conf, "--cgroup-parent", name, "--storage-driver", "overlay2"}, netFlags...)
	d, err := startNSDaemon(ctx, name, bin, sock, filepath.Join(dir, name+".log"), setup, args...)
	if err != nil {
		return nil, errors.Join(err, created())
	}
	d.cleanup = created
	if err := dockerLoad(ctx, sock, filepath.Join(sockDir, "docker-config"), archive); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return &peer{op: op, d: d}, nil
}

// newCgroups notes which v1 hierarchies lack a cgroup called name and
// returns a function that removes it, when empty, from those: what a
// daemon made and left behind (dockerd keeps its parent cgroup).
func newCgroups(name string) func() error {
	var missing []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, root := range roots {
		p := filepath.Join(root, name)
		if _, err := os.Stat(p); os.IsNotExist(err) {
			missing = append(missing, p)
		}
	}
	return func() error {
		var errs []error
		for _, p := range missing {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) && !errors.Is(err, os.ErrInvalid) {
				if _, statErr := os.Stat(p); statErr == nil {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", p, err))
				}
			}
		}
		return errors.Join(errs...)
	}
}
