package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cgroupV2 says the host's cgroups are pure v2 (the qemu guest), not v1
// controllers each on its own mount (this host).
func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupValue reads a file of the container's own cgroup from inside it
// (its /sys/fs/cgroup shows its own cgroup): v1 names the controller's
// file, v2 the unified one.
func (c cli) cgroupValue(name, v1, v2 string) string {
	c.t.Helper()
	file := "/sys/fs/cgroup/" + v1
	if cgroupV2() {
		file = "/sys/fs/cgroup/" + v2
	}
	return strings.TrimSpace(c.expect(0, "", "exec", name, "cat", file))
}

// checkMemoryAndCPULimits is the must-show both hosts run: --memory 64m
// and --cpus .5 reach the container's own cgroup (v1 here, v2 in the
// guest), and docker stats --no-stream lists it with non-zero memory.
func checkMemoryAndCPULimits(t *testing.T, c cli) {
	t.Helper()
	c.expect(0, "", "run", "-d", "--name", "lim", "--memory", "64m", "--cpus", ".5", "busybox", "sleep", "300")
	if got := c.cgroupValue("lim", "memory/memory.limit_in_bytes", "memory.max"); got != "67108864" {
		t.Errorf("--memory 64m: the container's cgroup says %q, want 67108864", got)
	}
	if cgroupV2() {
		if got := c.cgroupValue("lim", "", "cpu.max"); got != "50000 100000" {
			t.Errorf("--cpus .5: cpu.max %q, want \"50000 100000\"", got)
		}
	} else {
		quota, period := c.cgroupValue("lim", "cpu/cpu.cfs_quota_us", ""), c.cgroupValue("lim", "cpu/cpu.cfs_period_us", "")
		if quota != "50000" || period != "100000" {
			t.Errorf("--cpus .5: quota %s over period %s, want 50000 over 100000", quota, period)
		}
	}
	out := c.expect(0, "lim", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}")
	var name, usage, slash, limit string
	var pids int
	if _, err := fmt.Sscanf(out, "%s %s %s %s %d", &name, &usage, &slash, &limit, &pids); err != nil || name != "lim" || strings.HasPrefix(usage, "0B") || limit != "64MiB" || pids != 1 {
		t.Errorf("docker stats --no-stream: %q (%v), want lim with non-zero usage of 64MiB and 1 pid", out, err)
	}
}

// TestEndToEndLimits drives the resource limits with the docker CLI:
// each limit in the container's own cgroup and in inspect, dockerd's
// refusals and the blkio-weight warning, docker update on the live
// cgroup, --device-write-bps throttling direct I/O, an OOM kill reported
// by inspect, and docker stats (CPU %, memory, pids, networks).
func TestEndToEndLimits(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)
	checkMemoryAndCPULimits(t, c)

	c.expect(0, "", "run", "-d", "--name", "pinned", "--cpuset-cpus", "0", "--cpu-shares", "512", "--pids-limit", "50",
		"--memory", "64m", "--memory-reservation", "32m", "busybox", "sleep", "300")
	for file, want := range map[string]string{"cpuset/cpuset.cpus": "0", "cpu/cpu.shares": "512", "pids/pids.max": "50",
		"memory/memory.soft_limit_in_bytes": "33554432", "memory/memory.memsw.limit_in_bytes": "134217728"} {
		if got := c.cgroupValue("pinned", file, ""); got != want {
			t.Errorf("the cgroup's %s is %q, want %q", file, got, want)
		}
	}
	var insp []struct {
		HostConfig struct {
			Memory, MemorySwap, MemoryReservation, NanoCpus, CpuShares int64
			CpusetCpus                                                 string
			PidsLimit                                                  *int64
		}
	}
	inspect := func(name string) {
		t.Helper()
		if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", name)), &insp); err != nil || len(insp) != 1 {
			t.Fatalf("inspect %s: %v", name, err)
		}
	}
	inspect("pinned")
	if h := insp[0].HostConfig; h.Memory != 64<<20 || h.MemorySwap != 128<<20 || h.MemoryReservation != 32<<20 || h.CpuShares != 512 || h.CpusetCpus != "0" || h.PidsLimit == nil || *h.PidsLimit != 50 {
		t.Errorf("inspect pinned: HostConfig %+v", h)
	}
	inspect("lim")
	if h := insp[0].HostConfig; h.NanoCpus != 5e8 || h.Memory != 64<<20 {
		t.Errorf("inspect lim: HostConfig %+v, want NanoCpus 500000000 and Memory 67108864", h)
	}

	// docker update reaches the live cgroup and the record.
	since := apiTime(time.Now())
	c.expect(0, "pinned", "update", "--memory", "32m", "--memory-reservation", "16m", "--cpu-shares", "256", "pinned")
	c.expect(0, "update pinned", "events", "--since", since, "--until", apiTime(time.Now()), "--filter", "event=update",
		"--format", "{{.Action}} {{.Actor.Attributes.name}}")
	if got := c.cgroupValue("pinned", "memory/memory.limit_in_bytes", ""); got != "33554432" {
		t.Errorf("after update --memory 32m the cgroup says %s", got)
	}
	if got := c.cgroupValue("pinned", "cpu/cpu.shares", ""); got != "256" {
		t.Errorf("after update --cpu-shares 256 the cgroup says %s", got)
	}
	inspect("pinned")
	if h := insp[0].HostConfig; h.Memory != 32<<20 || h.CpuShares != 256 || h.CpusetCpus != "0" {
		t.Errorf("inspect after update: HostConfig %+v", h)
	}
	c.expect(1, "Memory limit should be smaller than already set memoryswap limit", "update", "--memory", "256m", "pinned")
	c.expect(1, "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set", "update", "--cpu-period", "50000", "lim")

	// dockerd's refusals, as 400s the CLI prints.
	for _, bad := range []struct{ want, flags string }{
		{"Minimum memory limit allowed is 6MB", "--memory 4m"},
		{"Minimum memoryswap limit should be larger than memory limit", "--memory 64m --memory-swap 32m"},
		{"Conflicting options: Nano CPUs and CPU Period cannot both be set", "--cpus 1 --cpu-period 50000"},
		{"Requested CPUs are not available - requested 64, available: ", "--cpuset-cpus 64"},
		{"Range of CPUs is from 0.01 to", "--cpus 999"},
		{"--device-write-bps /dev/null: not a block device", "--device-write-bps /dev/null:1mb"},
		{"not supported by layerlabd", "--gpus all"},
		{"not a device node", "--device /etc/hostname"},
	} {
		out := c.expect(1, bad.want, append(append([]string{"create"}, strings.Fields(bad.flags)...), "busybox", "true")...)
		if !strings.Contains(out, "Error response from daemon") {
			t.Errorf("create %s: %q is not the daemon's refusal", bad.flags, out)
		}
	}
	// What the CLI lets through but the daemon must refuse itself.
	checkAPIErrors(t, apiClient(c.sock), []apiError{
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","HostConfig":{"DeviceCgroupRules":["c 1:x rwm"]}}`), 400, "invalid device cgroup rule"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","HostConfig":{"Ulimits":[{"Name":"nofile","Soft":10,"Hard":5}]}}`), 400, "soft limit must be less than or equal to hard limit"},
	})
	if !cgroupV2() {
		// This host has no blkio.weight: dockerd's warning, and the run goes on.
		c.expect(0, "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.", "run", "--rm", "--blkio-weight", "300", "busybox", "true")
	}

	// A cgroup namespace of its own (dockerd's default on v2, asked for
	// here): its cgroup is its root, and its limits are still there.
	out := c.expect(0, "67108864", "run", "--rm", "--cgroupns", "private", "--memory", "64m", "busybox", "sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/memory/memory.limit_in_bytes")
	if !strings.Contains(out, ":memory:/\n") {
		t.Errorf("--cgroupns private: /proc/self/cgroup does not show the memory cgroup as its root:\n%s", out)
	}
	checkDeviceWriteBps(t, c, e.dataRoot)
	// --device, --device-cgroup-rule and --ulimit reach the container:
	// a loop-control node the container makes (not among the devices
	// allowed by default) opens only when a rule allows it (a read of it
	// then says EINVAL).
	lc := "mknod /tmp/lc c 10 237; cat /tmp/lc 2>&1"
	c.expect(1, "Operation not permitted", "run", "--rm", "busybox", "sh", "-c", lc)
	out = c.expect(1, "", "run", "--rm", "--device", "/dev/fuse:/dev/xfuse:rw", "--device-cgroup-rule", "c 10:237 rwm",
		"--ulimit", "nofile=1024:2048", "busybox", "sh", "-c", "ls -l /dev/xfuse; ulimit -n; ulimit -Hn; "+lc)
	for _, want := range []string{"10, 229", "/dev/xfuse", "1024\n2048\n", "Invalid argument"} {
		if !strings.Contains(out, want) {
			t.Errorf("--device /dev/fuse:/dev/xfuse --device-cgroup-rule 'c 10:237 rwm' --ulimit nofile=1024:2048: output lacks %q:\n%s", want, out)
		}
	}
	checkOOMKill(t, c)
	checkStatsAPI(t, c)
	c.expect(0, "", "rm", "-f", "lim", "pinned")
}

// checkDeviceWriteBps limits writes to the loop device under the data
// root (a loop ext4 the test made) to 1 MB/s: a 4 MiB direct write to the
// container's rootfs, which sits on it, takes about 4 s. v1's throttle
// counts only I/O the container itself submits, hence oflag=direct.
func checkDeviceWriteBps(t *testing.T, c cli, dataRoot string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dataRoot, &st); err != nil {
		t.Fatal(err)
	}
	link, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		t.Fatalf("the data root's block device: %v", err)
	}
	dev := "/dev/" + filepath.Base(link)
	c.expect(0, "", "create", "--name", "throttled", "--device-write-bps", dev+":1mb", "--device-read-iops", dev+":100", "busybox", "true")
	out := c.expect(0, "", "inspect", "-f", "{{json .HostConfig.BlkioDeviceWriteBps}} {{json .HostConfig.BlkioDeviceReadIOps}}", "throttled")
	if want := fmt.Sprintf(`[{"Path":"%s","Rate":1048576}] [{"Path":"%s","Rate":100}]`, dev, dev); strings.TrimSpace(out) != want {
		t.Errorf("inspect throttled: %s, want %s", out, want)
	}
	c.expect(0, "", "rm", "throttled")
	start := time.Now()
	out = c.expect(0, " 4194304 ", "run", "--rm", "--device-write-bps", dev+":1mb", "busybox",
		"sh", "-c", "dd if=/dev/zero of=/f bs=1M count=4 oflag=direct 2>&1; ls -l /f")
	took := time.Since(start)
	t.Logf("4 MiB with --device-write-bps %s:1mb took %v: %s", dev, took, out)
	if took < 3*time.Second {
		t.Errorf("4 MiB written at 1 MB/s took %v, want about 4 s (at least 3 s)", took)
	}
}

// checkOOMKill runs a container that allocates past its limit (tail
// keeps the endless line of /dev/zero in memory): the kernel kills it
// and inspect says OOMKilled.
func checkOOMKill(t *testing.T, c cli) {
	t.Helper()
	since := apiTime(time.Now())
	c.expect(137, "", "run", "--name", "oom", "--memory", "8m", "--memory-swap", "8m", "busybox", "tail", "/dev/zero")
	out := c.expect(0, "", "inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}", "oom")
	if strings.TrimSpace(out) != "true 137" {
		t.Errorf("inspect oom: %q, want OOMKilled true, exit 137", out)
	}
	out = c.expect(0, "", "events", "--since", since, "--until", apiTime(time.Now()), "--filter", "container=oom",
		"--filter", "event=oom", "--filter", "event=die", "--filter", "event=update", "--format", "{{.Action}}")
	if strings.TrimSpace(out) != "oom\ndie" {
		t.Errorf("events of the OOM-killed container: %q, want oom then die", out)
	}
	c.expect(0, "", "rm", "oom")
}

// checkStatsAPI reads GET /containers/{id}/stats as docker stats does:
// a one-off reading carries a previous CPU reading without a wait, a
// stream's second frame has the first's as its precpu, a busy container
// shows CPU use, and a container with its own netns lists its
// interfaces but lo (a veth pair the test adds there).
func checkStatsAPI(t *testing.T, c cli) {
	t.Helper()
	c.expect(0, "", "run", "-d", "--name", "busy", "--net", "none", "--cpus", ".5", "busybox", "sh", "-c", "while :; do :; done")
	pid := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.State.Pid}}", "busy"))
	if _, err := strconv.Atoi(pid); err != nil {
		t.Fatalf("inspect busy: pid %q", pid)
	}
	nsenter := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("nsenter", append([]string{"--net=/proc/" + pid + "/ns/net"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nsenter %v: %v: %s", args, err, out)
		}
	}
	nsenter("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	nsenter("ip", "addr", "add", "10.9.9.1/24", "dev", "v0")
	nsenter("ip", "link", "set", "v0", "up")
	nsenter("ip", "link", "set", "v1", "up")
	// Unanswered: v1 has no address. Its ARP requests go out of v0.
	c.run("exec", "busy", "ping", "-c", "2", "-W", "1", "10.9.9.2")
	client := apiClient(c.sock)
	var s struct {
		Read, PreRead time.Time
		Name          string
		CPUStats      struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
			SystemUsage uint64 `json:"system_cpu_usage"`
			OnlineCPUs  uint32 `json:"online_cpus"`
		} `json:"cpu_stats"`
		PreCPUStats struct {
			CPUUsage struct {
				TotalUsage uint64 `json:"total_usage"`
			} `json:"cpu_usage"`
			SystemUsage uint64 `json:"system_cpu_usage"`
		} `json:"precpu_stats"`
		MemoryStats struct {
			Usage, Limit uint64
			Stats        map[string]uint64
		} `json:"memory_stats"`
		PidsStats struct{ Current uint64 } `json:"pids_stats"`
		Networks  map[string]struct {
			TxBytes uint64 `json:"tx_bytes"`
		}
	}
	if code := call(t, client, "GET", "/containers/busy/stats?stream=false", nil, &s); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	if s.Name != "/busy" || s.PreRead.IsZero() || s.CPUStats.SystemUsage == 0 || s.MemoryStats.Usage == 0 || s.PidsStats.Current != 1 {
		t.Errorf("stats busy: %+v, want a reading with a previous one, memory and one pid", s)
	}
	if _, ok := s.MemoryStats.Stats["total_inactive_file"]; !ok && !cgroupV2() {
		t.Errorf("stats busy: memory stats lack total_inactive_file: %v", s.MemoryStats.Stats)
	}
	if _, ok := s.Networks["v1"]; !ok || len(s.Networks) != 2 || s.Networks["v0"].TxBytes == 0 {
		t.Errorf("stats busy: networks %+v, want v0 (with bytes sent) and v1", s.Networks)
	}
	cpuPercent := float64(s.CPUStats.CPUUsage.TotalUsage-s.PreCPUStats.CPUUsage.TotalUsage) / float64(s.CPUStats.SystemUsage-s.PreCPUStats.SystemUsage) * float64(s.CPUStats.OnlineCPUs) * 100
	t.Logf("busy at --cpus .5: %.1f%% CPU over %v", cpuPercent, s.Read.Sub(s.PreRead))
	if cpuPercent < 10 || cpuPercent > 70 {
		t.Errorf("a busy loop at --cpus .5 shows %.1f%% CPU, want about 50", cpuPercent)
	}
	// one-shot: a reading alone, no precpu, as dockerd's.
	var one struct{ PreRead time.Time }
	if code := call(t, client, "GET", "/containers/busy/stats?stream=false&one-shot=true", nil, &one); code != 200 || !one.PreRead.IsZero() {
		t.Errorf("stats one-shot: %d, preread %v, want none", code, one.PreRead)
	}
	// A stream: each frame's precpu is the frame before.
	resp, err := client.Get("http://layerlabd/v1.41/containers/busy/stats")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(resp.Body)
	var f1, f2 = s, s
	if err := dec.Decode(&f1); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&f2); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f2.PreCPUStats.CPUUsage.TotalUsage != f1.CPUStats.CPUUsage.TotalUsage || !f2.PreRead.Equal(f1.Read) || f2.CPUStats.CPUUsage.TotalUsage <= f1.CPUStats.CPUUsage.TotalUsage {
		t.Errorf("stats stream: frame 2 %+v does not follow frame 1 %+v", f2, f1)
	}
	// --net host: no networks of its own.
	c.expect(0, "", "run", "-d", "--name", "hostnet", "--net", "host", "busybox", "sleep", "300")
	var h struct{ Networks map[string]any }
	if call(t, client, "GET", "/containers/hostnet/stats?stream=false", nil, &h); len(h.Networks) != 0 {
		t.Errorf("stats of a --net host container: networks %v, want none", h.Networks)
	}
	c.expect(0, "", "rm", "-f", "busy", "hostnet")
}

// TestEndToEndLimitsRunc is the limits' path through the runc binary
// (layerlabd --runtime runc): the spec's resources at create, `runc
// update` for docker update (and an update of a stopped container at its
// next start), docker stats, and an OOM kill.
func TestEndToEndLimitsRunc(t *testing.T) {
	_, c := startRuncDaemon(t)
	checkMemoryAndCPULimits(t, c)
	c.expect(0, "lim", "update", "--memory", "32m", "--pids-limit", "20", "lim")
	if got := c.cgroupValue("lim", "memory/memory.limit_in_bytes", "memory.max"); got != "33554432" {
		t.Errorf("after update --memory 32m the cgroup says %s", got)
	}
	if got := c.cgroupValue("lim", "pids/pids.max", "pids.max"); got != "20" {
		t.Errorf("after update --pids-limit 20 the cgroup says %s", got)
	}
	// An update of a stopped container reaches its next start.
	c.expect(0, "lim", "stop", "-t", "0", "lim")
	c.expect(0, "lim", "update", "--memory", "48m", "lim")
	c.expect(0, "lim", "start", "lim")
	if got := c.cgroupValue("lim", "memory/memory.limit_in_bytes", "memory.max"); got != "50331648" {
		t.Errorf("started after update --memory 48m, the cgroup says %s", got)
	}
	c.expect(0, "", "rm", "-f", "lim")
	checkOOMKill(t, c)
}
