package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/loopfs"
)

// inspectMounts is what the volume test reads of docker inspect.
type inspectMounts struct {
	Mounts []struct {
		Type, Name, Source, Destination, Driver, Mode, Propagation string
		RW                                                         bool
	}
	HostConfig struct {
		Binds  []string
		Mounts []struct{ Type, Target string }
	}
}

// TestEndToEndVolumes walks the seeds' volume scenarios with the real
// docker CLI: a host directory shared live by two containers, read-only
// binds, a named volume outliving its containers, --volumes-from a volume
// container, anonymous volumes filled from the image and removed by rm -v,
// --tmpfs and --mount, docker inspect's Mounts, docker volume
// ls/inspect/rm/prune, a btrfs-backed volume whose 10M quota refuses a
// 20 MiB write and that is unmounted once its container ends, and the
// refusals of bad requests with dockerd's statuses.
func TestEndToEndVolumes(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	btrfs := loopfs.ForTest(t, "btrfs", 1<<30)
	e.drivers = "vfs,overlay2,btrfs"
	e.opts = []string{"--storage-opt", "btrfs.home=" + filepath.Join(btrfs.Dir, "layerlabd")}
	e.start(t, "layerlabd.log")
	c := e.busyboxCLI(t)
	host := t.TempDir()
	since := strconv.FormatInt(time.Now().Unix()-1, 10)

	// One container waits for a file another writes into the same host
	// directory; the host sees it too.
	c.expect(0, "", "run", "-d", "--name", "reader", "-v", host+":/shared", "busybox",
		"sh", "-c", "while [ ! -f /shared/msg ]; do sleep 0.05; done; cat /shared/msg")
	c.expect(0, "", "run", "--rm", "-v", host+":/out", "busybox", "sh", "-c", "echo hello from writer > /out/msg")
	c.expect(0, "0", "wait", "reader")
	c.expect(0, "hello from writer", "logs", "reader")
	if b, err := os.ReadFile(filepath.Join(host, "msg")); err != nil || string(b) != "hello from writer\n" {
		t.Errorf("host file: %q, %v", b, err)
	}
	c.expect(1, "Read-only file system", "run", "--rm", "-v", host+":/in:ro", "busybox", "touch", "/in/x")
	// -v creates a missing host directory, as dockerd does.
	c.expect(0, "", "run", "--rm", "-v", filepath.Join(host, "new/sub")+":/n", "busybox", "touch", "/n/made")
	if _, err := os.Stat(filepath.Join(host, "new/sub/made")); err != nil {
		t.Errorf("-v with a missing host directory: %v", err)
	}

	// A named volume outlives the container that wrote it.
	c.expect(0, "data1", "volume", "create", "--label", "team=a", "data1")
	c.expect(0, "", "run", "--rm", "-v", "data1:/d", "busybox", "sh", "-c", "echo persisted > /d/f")
	c.expect(0, "persisted", "run", "--rm", "-v", "data1:/d:ro", "busybox", "cat", "/d/f")
	var vol []struct {
		Name, Driver, Mountpoint, Scope string
		Labels                          map[string]string
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "volume", "inspect", "data1")), &vol); err != nil || len(vol) != 1 {
		t.Fatalf("volume inspect: %v", err)
	}
	if v := vol[0]; v.Driver != "local" || v.Scope != "local" || v.Labels["team"] != "a" || v.Mountpoint != filepath.Join(e.dataRoot, "volumes/data1/_data") {
		t.Errorf("volume inspect data1: %+v", v)
	}
	if b, err := os.ReadFile(filepath.Join(e.dataRoot, "volumes/data1/_data/f")); err != nil || string(b) != "persisted\n" {
		t.Errorf("data1's file on the host: %q, %v", b, err)
	}

	// --volumes-from a volume container, read-write and read-only.
	c.expect(0, "", "create", "--name", "store", "-v", "/vdata", "busybox", "true")
	c.expect(0, "", "run", "--rm", "--volumes-from", "store", "busybox", "sh", "-c", "echo shared > /vdata/x")
	c.expect(0, "shared", "run", "--rm", "--volumes-from", "store:ro", "busybox", "cat", "/vdata/x")
	c.expect(1, "Read-only file system", "run", "--rm", "--volumes-from", "store:ro", "busybox", "touch", "/vdata/y")

	// inspect's Mounts and HostConfig; an in-use volume refuses rm.
	c.expect(0, "", "run", "-d", "--name", "insp", "-v", "data1:/d", "-v", host+":/h:ro",
		"--mount", "type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=0700", "busybox", "sleep", "60")
	var insp []inspectMounts
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "insp")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect insp: %v", err)
	}
	got := map[string]string{}
	for _, m := range insp[0].Mounts {
		got[m.Destination] = strings.Join([]string{m.Type, m.Name, m.Source, m.Driver, m.Mode, strconv.FormatBool(m.RW), m.Propagation}, "|")
	}
	want := map[string]string{
		"/d": "volume|data1|" + filepath.Join(e.dataRoot, "volumes/data1/_data") + "|local||true|",
		"/h": "bind||" + host + "||ro|false|rprivate",
		"/t": "tmpfs|||||true|",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("inspect Mounts %s: %q, want %q", k, got[k], v)
		}
	}
	if hc := insp[0].HostConfig; len(hc.Binds) != 2 || len(hc.Mounts) != 1 || hc.Mounts[0].Type != "tmpfs" {
		t.Errorf("inspect HostConfig: %+v", hc)
	}
	c.expect(0, "tmpfs /t tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k,mode=700", "exec", "insp", "cat", "/proc/mounts")
	// The CLI sends -v binds from a map, so their order varies.
	if out := c.expect(0, "", "ps", "-a", "--filter", "volume=data1", "--format", "{{.Names}} {{.Mounts}}"); !strings.HasPrefix(out, "insp ") ||
		!slices.Contains(strings.Split(strings.TrimSpace(strings.TrimPrefix(out, "insp ")), ","), "data1") || strings.Count(out, "\n") != 1 {
		t.Errorf("ps --filter volume=data1: %q", out)
	}
	out := c.expect(1, "volume is in use - [", "volume", "rm", "data1")
	if !strings.Contains(out, "remove data1") {
		t.Errorf("volume rm of an in-use volume: %s", out)
	}
	client := apiClient(e.sock)
	checkAPIErrors(t, client, []apiError{
		{http.MethodDelete, "/v1.41/volumes/data1", nil, http.StatusConflict, "volume is in use"},
		{http.MethodGet, "/v1.41/volumes/nosuch", nil, http.StatusNotFound, "get nosuch: no such volume"},
		{http.MethodPost, "/v1.41/volumes/create", []byte(`{"Name":"a/b"}`), http.StatusBadRequest, `"a/b" includes invalid characters for a local volume name`},
	})
	c.expect(0, "insp", "rm", "-f", "insp")

	// --tmpfs is a tmpfs with dockerd's default flags and the options given.
	c.expect(0, "tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,relatime,size=2048k,mode=700", "run", "--rm",
		"--tmpfs", "/scratch:size=2m,mode=700", "busybox", "cat", "/proc/mounts")

	// An image's VOLUME: a new anonymous volume gets the image's content;
	// rm -v removes it, volume-nocopy keeps a volume empty.
	c.expect(0, "", "run", "--name", "seed", "busybox", "sh", "-c", "mkdir /data && echo from the image > /data/f")
	c.expect(0, "sha256:", "commit", "--change", "VOLUME /data", "seed", "withvol")
	c.expect(0, "from the image", "run", "--name", "av", "withvol", "cat", "/data/f")
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", "av")), &insp); err != nil || len(insp) != 1 || len(insp[0].Mounts) != 1 {
		t.Fatalf("inspect av: %v %+v", err, insp)
	}
	anon := insp[0].Mounts[0].Name
	if len(anon) != 64 || insp[0].Mounts[0].Destination != "/data" {
		t.Errorf("av's anonymous volume: %+v", insp[0].Mounts[0])
	}
	c.expect(0, anon, "volume", "ls", "-q")
	c.expect(0, "av", "rm", "-v", "av")
	if out, _ := c.run("volume", "ls", "-q"); strings.Contains(out, anon) {
		t.Errorf("rm -v left the anonymous volume %s:\n%s", anon, out)
	}
	before, _ := c.run("volume", "ls", "-q")
	c.expect(0, "", "run", "--rm", "-v", "/anon", "busybox", "touch", "/anon/x")
	if after, _ := c.run("volume", "ls", "-q"); after != before {
		t.Errorf("run --rm left its anonymous volume: before\n%s\nafter\n%s", before, after)
	}
	c.expect(0, "", "run", "--rm", "--mount", "type=volume,source=nocopy,target=/data,volume-nocopy", "withvol",
		"sh", "-c", "test -z \"$(ls -A /data)\"")

	checkBtrfsVolume(t, c, e)
	checkBadVolumeRequests(t, c)

	// prune by label, then every unused volume (API 1.41's prune).
	c.expect(0, "", "volume", "create", "--label", "junk=1", "junk")
	out = c.expect(0, "junk", "volume", "prune", "-f", "--filter", "label=junk=1")
	if strings.Contains(out, "data1") {
		t.Errorf("prune by label removed data1:\n%s", out)
	}
	c.expect(0, "", "rm", "store", "reader", "seed")
	c.expect(0, "data1", "volume", "prune", "-f")
	if out, _ := c.run("volume", "ls", "-q"); strings.TrimSpace(out) != "quota" {
		t.Errorf("volumes left after prune: %q, want only quota, in use", out)
	}
	// data1's life in docker events: created, mounted and unmounted for
	// each of its three containers' runs, destroyed by the prune.
	out = c.expect(0, "", "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "type=volume", "--filter", "volume=data1", "--format", "{{.Action}}")
	if got := strings.Fields(out); strings.Join(got, " ") != "create mount unmount mount unmount mount unmount destroy" {
		t.Errorf("data1's events: %q", got)
	}

	// SIGTERM with a container running on the btrfs volume: the daemon
	// unmounts it and exits cleanly; the next one has the volume and
	// its data.
	e.d.terminate(t)
	if log := e.d.logText(); strings.Contains(log, "level=ERROR") {
		t.Errorf("the daemon's shutdown logged an error:\n%s", log)
	}
	e.start(t, "layerlabd-2.log")
	c.d = e.d
	c.expect(0, "5242880", "run", "--rm", "-v", "quota:/q", "busybox", "stat", "-c", "%s", "/q/small")
	// Its end was clean: an unmount that failed would be its error.
	if out := c.expect(0, "", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} [{{.State.Error}}]", "qrun"); strings.TrimSpace(out) != "exited 137 []" {
		t.Errorf("qrun after the daemon's SIGTERM: %q, want exited 137 with no error", out)
	}
	c.expect(0, "", "rm", "qrun")
	c.expect(0, "quota", "volume", "rm", "quota")
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// checkBtrfsVolume: a volume on btrfs with size=10M takes 5 MiB and
// refuses 20 MiB, is mounted only while a container uses it (one, qrun,
// goes on running), and the refusals of a driver without quota or not
// enabled name the drivers.
func checkBtrfsVolume(t *testing.T, c cli, e testEnv) {
	c.expect(0, "quota", "volume", "create", "-o", "driver=btrfs", "-o", "size=10M", "quota")
	c.expect(0, "btrfs", "volume", "inspect", "-f", "{{.Status.StorageDriver}}", "quota")
	c.expect(0, "", "run", "--rm", "-v", "quota:/q", "busybox", "sh", "-c", "dd if=/dev/zero of=/q/small bs=1M count=5 && sync")
	c.expect(1, "quota exceeded", "run", "--rm", "-v", "quota:/q", "busybox", "sh", "-c", "dd if=/dev/zero of=/q/big bs=1M count=20 && sync")
	volMounts := func() string {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(e.d.cmd.Process.Pid) + "/mounts")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, filepath.Join(e.dataRoot, "volumes")) {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	if m := volMounts(); m != "" {
		t.Errorf("a volume is still mounted after its container ended:\n%s", m)
	}
	c.expect(0, "", "run", "-d", "--name", "qrun", "-v", "quota:/q", "busybox", "sleep", "600")
	if m := volMounts(); !strings.Contains(m, "btrfs") {
		t.Errorf("the btrfs volume is not mounted while its container runs: %q", m)
	}
	c.expect(1, "vfs cannot limit a volume's size here", "volume", "create", "-o", "driver=vfs", "-o", "size=10M", "noquota")
	c.expect(1, "with a quota among the enabled ones: btrfs", "volume", "create", "-o", "driver=vfs", "-o", "size=10M", "noquota")
	c.expect(1, "enabled: vfs, overlay2, btrfs", "volume", "create", "-o", "driver=zfs", "nozfs")
}

// checkBadVolumeRequests: a volume name with '/', a relative -v source,
// a bad mode and a --mount bind of a missing path are refused with 400's
// words (the CLI exits 125 for run, 1 for volume create).
func checkBadVolumeRequests(t *testing.T, c cli) {
	c.expect(1, `"a/b" includes invalid characters for a local volume name`, "volume", "create", "a/b")
	c.expect(125, "If you intended to pass a host directory, use absolute path", "run", "--rm", "-v", "rel/dir:/x", "busybox", "true")
	c.expect(125, "invalid mode: rx", "run", "--rm", "-v", "/tmp:/x:rx", "busybox", "true")
	c.expect(125, "bind source path does not exist: /no/such/dir", "run", "--rm", "--mount", "type=bind,source=/no/such/dir,target=/x", "busybox", "true")
	c.expect(125, "Duplicate mount point: /x", "run", "--rm", "-v", "/tmp:/x", "-v", "/var:/x", "busybox", "true")
}

// TestEndToEndVolumesRunc: the same mounts through the runc binary (the
// OCI spec's bind, volume and tmpfs mounts), and a volume through
// docker-py.
func TestEndToEndVolumesRunc(t *testing.T) {
	e, c := startRuncDaemon(t)
	host := t.TempDir()
	c.expect(0, "", "run", "--rm", "-v", host+":/h", "-v", "named:/n", "busybox", "sh", "-c", "echo bound > /h/f; echo named > /n/f")
	c.expect(0, "bound\nnamed\n", "run", "--rm", "--mount", "type=bind,source="+host+",target=/h,readonly,bind-propagation=rslave",
		"--mount", "type=volume,source=named,target=/n", "busybox", "cat", "/h/f", "/n/f")
	c.expect(1, "Read-only file system", "run", "--rm", "--mount", "type=bind,source="+host+",target=/h,readonly", "busybox", "touch", "/h/x")
	c.expect(0, "tmpfs /t tmpfs rw,nosuid,nodev,noexec,relatime,size=1024k", "run", "--rm", "--tmpfs", "/t:size=1m", "busybox", "cat", "/proc/mounts")
	c.expect(0, "named", "volume", "rm", "named")
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// TestEndToEndVolumesDockerPy: volumes.create/get/list/remove/prune and
// containers.run with volumes= (testdata/dockerpy_volumes.py).
func TestEndToEndVolumesDockerPy(t *testing.T) {
	runDockerPy(t, "dockerpy_volumes.py")
}
