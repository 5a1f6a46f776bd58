package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/runtime/images/imagetest"
)

// nsDaemon is a daemon (layerlabd or the dockerd peer) the lifecycle
// workload started in a mount and a network namespace of its own, so its
// mounts and its containers' networks never reach the host's.
type nsDaemon struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
	log    string
	mntNS  string   // its mount namespace, to find processes left in it
	nsFile *os.File // held open while the daemon runs (see holdNamespace)
	sock   string
	// cleanup, when set, runs last in stop: what the daemon leaves on the
	// host (dockerd's parent cgroups).
	cleanup func() error
}

// startNSDaemon runs bin with args under `unshare --mount --propagation
// slave --net`: the loop filesystems the harness mounted reach it, nothing
// it mounts comes back, and everything it mounted goes with the namespace
// when its last process exits. setup, when set, is a shell command run in
// the new namespace before bin is exec'd (unshare execs, so the PID is the
// daemon's). It returns once the daemon answers on sock.
func startNSDaemon(ctx context.Context, name, bin, sock, logPath, setup string, args ...string) (*nsDaemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own copy
	uargs := []string{"--mount", "--propagation", "slave", "--net"}
	if setup != "" {
		uargs = append(uargs, "sh", "-ec", setup+`; exec "$0" "$@"`)
	}
	cmd := exec.Command("unshare", append(append(uargs, bin), args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "DOCKER_HOST=") // never a user's daemon
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &nsDaemon{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath, sock: sock}
	go func() {
		d.err = cmd.Wait()
		close(d.exited)
	}()
	if err := d.waitSocket(ctx, time.Minute); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// workloadDir makes the directory a daemon workload keeps its daemon's
// roots and its archives in, next to t's home on the backing filesystem;
// done removes it unless something is still mounted below it.
func workloadDir(t *target, workload string) (dir string, done func(), err error) {
	dir = filepath.Join(filepath.Dir(t.home), "layerlab-bench-"+workload+"-"+t.info.Driver)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	return dir, func() {
		// Never RemoveAll across a mount that failed to go.
		if points, err := mount.Under(dir); err == nil && len(points) == 0 {
			os.RemoveAll(dir)
		}
	}, nil
}

// busyboxArchive builds the busybox test image and writes it to dir as a
// docker-archive tagged busybox:latest, for a daemon to load.
func busyboxArchive(ctx context.Context, dir string) (v1.Image, string, error) {
	if _, err := os.Stat(imagetest.Busybox); err != nil {
		return nil, "", fmt.Errorf("%s: %v (make setup installs busybox-static): %w", imagetest.Busybox, err, drivers.ErrUnavailable)
	}
	imgs, err := imagetest.Build(ctx, imagetest.Busybox)
	if err != nil {
		return nil, "", fmt.Errorf("busybox image: %w", err)
	}
	archive := filepath.Join(dir, "busybox.tar")
	if err := imagetest.Write(archive, map[string]v1.Image{"busybox:latest": imgs.Latest}); err != nil {
		return nil, "", err
	}
	return imgs.Latest, archive, nil
}

// benchDaemon is a layerlabd a workload started for a target, with the
// short temporary directory holding its socket.
type benchDaemon struct {
	*nsDaemon
	sockDir string
}

// startLayerlabd starts layerlabd (from bin/ next to layerlab, or PATH)
// for target t with its data and exec roots in dir and the target's
// driver, options and a home of its own there; it returns nil, with a note
// saying which ops of workload are not measured, when layerlabd is not
// built or cannot serve t's driver.
func startLayerlabd(ctx context.Context, r *run, t *target, dir, workload, ops string) (*benchDaemon, error) {
	bin, err := findBinary("layerlabd")
	if err != nil {
		r.noteOnce(workload+"-no-layerlabd", fmt.Sprintf("%s: %s not measured: %v (make build puts it in bin/ next to layerlab)", workload, ops, err))
		return nil, nil
	}
	if t.info.Driver == "zfs" {
		// The pool's datasets are mounted by zfs-fuse in the host's
		// namespace; they reach a daemon in a slave namespace only below
		// a shared mount, which the harness's pool is not.
		r.noteOnce(workload+"-zfs", fmt.Sprintf("%s: %s not measured on zfs: layerlabd would need the pool below a shared mount to see the datasets zfs-fuse mounts for it", workload, ops))
		return nil, nil
	}
	// Socket paths are short (108 bytes at most): their own temp dir.
	sockDir, err := os.MkdirTemp("", "llbench-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(sockDir, "l.sock")
	name := t.info.Driver
	// Its own cgroup parent: the containers of a layerlabd that runs
	// next to the bench (an e2e test) live under /layerlab.
	// --bridge none: cli-run's `docker run` gets network none, as
	// api-run's creates ask, the match of dockerd-nonet-cli-run (and
	// builds run with network none); bridgeRuns makes its own network.
	args := []string{"-H", "unix://" + sock, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--cgroup-parent", daemonCgroupParent, "--storage-driver", name, "--storage-opt", name + ".home=" + filepath.Join(dir, "home"),
		"--bridge", "none"}
	keys := make([]string, 0, len(t.info.DriverOptions))
	for k := range t.info.DriverOptions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--storage-opt", name+"."+k+"="+t.info.DriverOptions[k])
	}
	d, err := startNSDaemon(ctx, "layerlabd", bin, sock, filepath.Join(dir, "layerlabd.log"), "", args...)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(sockDir))
	}
	return &benchDaemon{nsDaemon: d, sockDir: sockDir}, nil
}

// stop stops the daemon and removes its socket directory.
func (b *benchDaemon) stop() error {
	return errors.Join(b.nsDaemon.stop(), os.RemoveAll(b.sockDir))
}

// waitSocket waits until the daemon answers a ping on its socket and
// records its mount namespace (by then unshare has exec'd the daemon).
func (d *nsDaemon) waitSocket(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := newAPIClient(d.sock)
	defer c.close()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := c.do(pctx, http.MethodGet, "/_ping", nil, nil)
		cancel()
		if err == nil {
			return d.holdNamespace()
		}
		select {
		case <-d.exited:
			return fmt.Errorf("%s exited before serving (%v): %s", d.name, d.err, d.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not serve %s within %v: %s", d.name, d.sock, limit, d.logTail())
		}
	}
}

// holdNamespace records the daemon's mount namespace and holds it open,
// so its number cannot go to another namespace before stop has looked for
// processes left in it. Only once the daemon serves: before unshare has
// exec'd it, the process is still in the bench's own namespace.
func (d *nsDaemon) holdNamespace() error {
	path := fmt.Sprintf("/proc/%d/ns/mnt", d.cmd.Process.Pid)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: its mount namespace: %w", d.name, err)
	}
	ns, err := os.Readlink(path)
	own, err2 := os.Readlink("/proc/self/ns/mnt")
	if err != nil || err2 != nil || ns == own {
		f.Close()
		return fmt.Errorf("%s: not in a mount namespace of its own (%s; %v %v)", d.name, ns, err, err2)
	}
	d.mntNS, d.nsFile = ns, f
	return nil
}

// logTail is the end of the daemon's log, for errors.
func (d *nsDaemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// pid is the daemon's process ID.
func (d *nsDaemon) pid() int { return d.cmd.Process.Pid }

// stop sends SIGTERM (the daemon stops its containers and unmounts them),
// SIGKILL after 30 s, then kills whatever is still in the daemon's mount
// namespace (dockerd's containerd and shims), so the namespace and every
// mount in it are gone when stop returns. It runs with a fresh context:
// it is also the teardown of a cancelled run.
func (d *nsDaemon) stop() error {
	var errs []error
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(30 * time.Second):
			errs = append(errs, fmt.Errorf("%s did not exit within 30 s of SIGTERM; killed: %s", d.name, d.logTail()))
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.err != nil && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s exited with %v after SIGTERM: %s", d.name, d.err, d.logTail()))
	}
	if d.nsFile != nil {
		errs = append(errs, killNamespace(d.mntNS))
		d.nsFile.Close() // the namespace and its mounts go now
		d.nsFile = nil
	}
	if d.cleanup != nil {
		errs = append(errs, d.cleanup())
	}
	return errors.Join(errs...)
}

// killNamespace SIGKILLs every process left in mount namespace ns (one
// the bench made, so they are all its daemon's) and waits until none is.
func killNamespace(ns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		links, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
		for _, l := range links {
			if got, err := os.Readlink(l); err == nil && got == ns {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(l))))
				left = append(left, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in the daemon's mount namespace %s", left, ns)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rssBytes is a process's resident set (VmRSS of /proc/PID/status).
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuTime is the CPU time process pid and its reaped children used
// (utime+stime+cutime+cstime of /proc/PID/stat), in clock ticks of 10 ms:
// coarse, so callers read it across many container lives.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields follow its ")".
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	var ticks int64
	for _, v := range f[11:15] { // fields 14-17: utime stime cutime cstime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ticks) * tick, nil
}

// cpuMeter records the CPU time a process spends per operation over the
// timed part of a series: one sample, ns per operation.
type cpuMeter struct {
	pid   int
	start time.Duration
	n     int
}

// begin starts counting; call it when the timed samples start.
func (m *cpuMeter) begin() error {
	var err error
	m.start, err = cpuTime(m.pid)
	return err
}

// end records the CPU time per operation since begin under p.
func (m *cpuMeter) end(rec *recorder, p point, ops int) error {
	now, err := cpuTime(m.pid)
	if err != nil {
		return err
	}
	p.Unit = "ns"
	rec.add(p, float64(now-m.start)/float64(ops))
	return nil
}

// apiClient speaks the Docker Engine API 1.41 over a unix socket: plain
// net/http, so what is timed is the daemon, not a client library.
type apiClient struct {
	hc *http.Client
}

func newAPIClient(sock string) *apiClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		// start-50 keeps 50 requests in flight at once.
		MaxIdleConnsPerHost: 64,
	}
	return &apiClient{hc: &http.Client{Transport: tr}}
}

func (c *apiClient) close() { c.hc.CloseIdleConnections() }

// do sends a request with body (JSON-encoded unless an io.Reader) and
// decodes a 2xx answer into out (when non-nil); any other status is an
// error carrying the daemon's message.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ctype = b, "application/x-tar"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://layerlabd/v1.41"+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var e struct{ Message string }
		if json.Unmarshal(msg, &e) == nil && e.Message != "" {
			msg = []byte(e.Message)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	switch o := out.(type) {
	case nil:
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	case io.Writer:
		_, err = io.Copy(o, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// load posts a docker-archive to /images/load and fails on an error in
// the streamed answer as well as on a bad status.
func (c *apiClient) load(ctx context.Context, archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	var body bytes.Buffer
	if err := c.do(ctx, http.MethodPost, "/images/load?quiet=1", f, &body); err != nil {
		return err
	}
	if _, _, err := readStream(&body); err != nil {
		return fmt.Errorf("load %s: %w", archive, err)
	}
	return nil
}

// streamMessage is one message of the JSON stream /images/load and /build
// answer with.
type streamMessage struct {
	Stream      string          `json:"stream"`
	Aux         json.RawMessage `json:"aux"` // {"ID": ...} from /build; other shapes elsewhere
	Error       string          `json:"error"`
	ErrorDetail struct {
		Message string
	} `json:"errorDetail"`
}

// readStream reads a daemon's JSON message stream to its end and returns
// the text of its stream messages and the last aux ID; an error message in
// it, or a malformed stream, is an error (with the text so far).
func readStream(r io.Reader) (text, id string, err error) {
	var b strings.Builder
	dec := json.NewDecoder(r)
	for {
		var msg streamMessage
		if err := dec.Decode(&msg); err == io.EOF {
			return b.String(), id, nil
		} else if err != nil {
			return b.String(), id, fmt.Errorf("malformed answer after %q: %w", tail(b.String()), err)
		}
		if msg.Error != "" || msg.ErrorDetail.Message != "" {
			m := msg.ErrorDetail.Message
			if m == "" {
				m = msg.Error
			}
			return b.String(), id, fmt.Errorf("%s (after %q)", m, tail(b.String()))
		}
		b.WriteString(msg.Stream)
		var aux struct{ ID string }
		if json.Unmarshal(msg.Aux, &aux) == nil && aux.ID != "" {
			id = aux.ID
		}
	}
}

// findBinary returns name next to the running executable (make build puts
// layerlab and layerlabd in bin/) or else on PATH.
func findBinary(name string) (string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: not next to this executable nor on PATH: %w", name, drivers.ErrUnavailable)
	}
	return p, nil
}

// dockerCLI is the docker CLI cli-run times.
const dockerCLI = "/usr/local/bin/docker"

// cliRun runs `docker run --rm busybox true` against the daemon on sock,
// with its own empty client configuration.
func cliRun(ctx context.Context, sock, config string) error {
	cmd := exec.CommandContext(ctx, dockerCLI, "-H", "unix://"+sock, "run", "--rm", "busybox", "true")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "DOCKER_HOST=", "DOCKER_CONTEXT=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker run --rm busybox true: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// dockerLoad loads archive into the daemon on sock with the docker CLI.
func dockerLoad(ctx context.Context, sock, config, archive string) error {
	cmd := exec.CommandContext(ctx, dockerCLI, "-H", "unix://"+sock, "load", "-i", archive)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "DOCKER_HOST=", "DOCKER_CONTEXT=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("docker load: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}
