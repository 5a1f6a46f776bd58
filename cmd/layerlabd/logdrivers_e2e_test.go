package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestEndToEndLogDrivers drives the log drivers with the docker CLI
// against a layerlabd whose default is --log-driver local: --tail on
// json-file and local, json-file's max-size/max-file on disk, local's
// compressed rotation read with follow, none and its docker logs error,
// the refusals of an unknown driver and option (per container and
// daemon-wide), syslog into Debian's rsyslogd over udp and tcp, and
// fluentd into a forward-protocol receiver, both with dual logging.
func TestEndToEndLogDrivers(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	e.opts = []string{"--log-driver", "local", "--log-opt", "max-file=4"}
	withLoopback(t, &e) // the daemon reaches rsyslogd and fluentd on lo
	e.start(t, "layerlabd.log")
	c := e.busyboxCLI(t)
	c.expect(0, "local [fluentd json-file local none syslog]", "info", "--format", "{{.LoggingDriver}} {{.Plugins.Log}}")
	dir := func(name string) string {
		id := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.Id}}", name))
		return filepath.Join(e.dataRoot, "containers", id)
	}
	five := "for i in 1 2 3 4 5; do echo line $i; done"

	// The daemon's default driver and options go to a container that
	// names none; one that names its driver gets none of the options.
	c.expect(0, "", "run", "--name", "loc", "busybox", "sh", "-c", five)
	c.expect(0, "local map[max-file:4]", "inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Config}}", "loc")
	c.expect(0, "", "run", "--name", "js", "--log-driver", "json-file", "busybox", "sh", "-c", five)
	c.expect(0, "json-file map[]", "inspect", "-f", "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Config}}", "js")
	for _, name := range []string{"loc", "js"} {
		if out := c.expect(0, "", "logs", "--tail", "2", name); out != "line 4\nline 5\n" {
			t.Errorf("docker logs --tail 2 %s: %q, want the last two of five lines", name, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir("loc"), "local-logs", "container.log")); err != nil {
		t.Errorf("the local driver's file: %v", err)
	}

	// json-file: max-size=1k max-file=3 keeps at most three files.
	c.expect(0, "", "run", "--name", "rot", "--log-driver", "json-file", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
		"busybox", "sh", "-c", "i=0; while [ $i -lt 100 ]; do echo rotating line $i; i=$((i+1)); done")
	if files, _ := filepath.Glob(filepath.Join(dir("rot"), "*-json.log*")); len(files) != 3 {
		t.Errorf("json-file max-size=1k max-file=3 after ~7 KiB: files %v, want exactly three", files)
	}
	c.expect(0, "rotating line 99\n", "logs", "--tail", "1", "rot")
	// labels/env options: the values ride on every json-file line.
	c.expect(0, "", "run", "--name", "attrs", "--log-driver", "json-file", "--label", "tier=front", "-e", "STAGE=prod",
		"--log-opt", "labels=tier", "--log-opt", "env=STAGE", "busybox", "echo", "with attrs")
	ids := c.expect(0, "", "inspect", "-f", "{{.Id}}", "attrs")
	if data, err := os.ReadFile(filepath.Join(dir("attrs"), strings.TrimSpace(ids)+"-json.log")); err != nil ||
		!strings.Contains(string(data), `"log":"with attrs\n","stream":"stdout"`) || !strings.Contains(string(data), `"attrs":{"STAGE":"prod","tier":"front"}`) {
		t.Errorf("json-file with labels=tier env=STAGE: %q %v, want the attrs on the line", data, err)
	}

	// local: rotated files are compressed; docker logs -f follows a log
	// that rotates meanwhile, every line once.
	c.expect(0, "", "run", "-d", "--name", "lf", "--log-opt", "max-size=1k", "--log-opt", "max-file=3", "busybox",
		"sh", "-c", "i=0; while [ $i -lt 200 ]; do echo n $i; i=$((i+1)); usleep 5000; done")
	out := c.expect(0, "n 199\n", "logs", "-f", "lf")
	checkSequence(t, out, "n ")
	var files []string
	ents, _ := os.ReadDir(filepath.Join(dir("lf"), "local-logs"))
	for _, e := range ents {
		files = append(files, e.Name())
	}
	if strings.Join(files, " ") != "container.log container.log.1.gz container.log.2.gz" {
		t.Errorf("local max-size=1k max-file=3: files %v, want the live file and two compressed ones", files)
	}

	// none keeps nothing, and docker logs says so as dockerd does.
	c.expect(0, "shown\n", "run", "--name", "nl", "--log-driver", "none", "busybox", "echo", "shown")
	c.expect(1, "configured logging driver does not support reading", "logs", "nl")
	// The rootfs and the network's managed /etc files, no log file.
	ents, _ = os.ReadDir(dir("nl"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "hostname,hosts,resolv.conf,rootfs" {
		t.Errorf("--log-driver none: container dir holds %v", names)
	}
	c.expect(125, "no log driver named 'nosuch' is registered (supported: fluentd, json-file, local, none, syslog)",
		"run", "--rm", "--log-driver", "nosuch", "busybox", "true")
	c.expect(125, "unknown log opt 'tag' for local log driver", "run", "--rm", "--log-driver", "local", "--log-opt", "tag=x", "busybox", "true")
	create := func(driver, opts string) []byte {
		return fmt.Appendf(nil, `{"Image":"busybox","Cmd":["true"],"HostConfig":{"LogConfig":{"Type":%q,"Config":%s}}}`, driver, opts)
	}
	checkAPIErrors(t, apiClient(e.sock), []apiError{
		{"POST", "/v1.41/containers/create", create("nosuch", "{}"), 400, "no log driver named 'nosuch' is registered (supported: "},
		{"POST", "/v1.41/containers/create", create("json-file", `{"x":"1"}`), 400, "unknown log opt 'x' for json-file log driver"},
		{"POST", "/v1.41/containers/create", create("syslog", `{"syslog-address":"ftp://h"}`), 400, "syslog-address"},
		{"GET", "/v1.41/containers/nl/logs?stdout=1", nil, 501, "configured logging driver does not support reading"},
	})

	checkSyslogDriver(t, c, e.d.cmd.Process.Pid)
	checkFluentdDriver(t, c, e.d.cmd.Process.Pid, dir)

	c.expect(0, "", "rm", "loc", "js", "rot", "attrs", "lf", "nl", "sl", "st", "fl", "fa", "fu")
	if left, _ := os.ReadDir(filepath.Join(e.dataRoot, "containers")); len(left) != 0 {
		t.Errorf("rm left container directories %v", left)
	}
	e.d.terminate(t)
	checkNoLeftovers(t)

	// A bad daemon-wide default stops the daemon before it serves.
	bad := startDaemon(t, e.bin, filepath.Join(e.tmp, "bad.log"), "-H", "unix://"+filepath.Join(e.tmp, "bad.sock"),
		"--data-root", e.dataRoot, "--exec-root", filepath.Join(e.tmp, "exec-bad"), "--log-driver", "json-file", "--log-opt", "max-size=huge")
	<-bad.exited
	if msg := bad.logText(); bad.err == nil || !strings.Contains(msg, `max-size="huge"`) {
		t.Errorf("--log-opt max-size=huge: %v, want a refusal:\n%s", bad.err, msg)
	}
}

// runInNetns runs f on a thread moved into the network namespace of the
// process pid (the test's layerlabd, which runs under unshare --net), then
// moves the thread back; a socket f opens stays in that namespace.
func runInNetns(t *testing.T, pid int, f func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer own.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		err = f()
		// Back home, or the thread must die with this goroutine (it stays
		// locked) rather than run other goroutines in the wrong namespace.
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// listening says whether the network namespace of pid has a socket bound
// to 127.0.0.1:port in /proc/PID/net/<proto> (udp or tcp).
func listening(pid int, proto string, port int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, proto))
	return err == nil && strings.Contains(string(b), fmt.Sprintf(" 0100007F:%04X ", port))
}

// startRsyslog starts Debian's rsyslogd in the network namespace of the
// process pid with a config of its own: udp and tcp inputs on
// 127.0.0.1:port, every message written to the file it returns, no
// local sockets and its own pid file and work directory. Each line there
// is "facility.severity tag message". It is stopped
// by PID when the test ends, also on failure.
func startRsyslog(t *testing.T, pid, port int) string {
	t.Helper()
	bin := "/usr/sbin/rsyslogd"
	if _, err := os.Stat(bin); err != nil {
		feature.Skip(t, feature.Rsyslog, "%s: %v (make setup installs rsyslog)", bin, err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "messages")
	conf := filepath.Join(dir, "rsyslog.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, `global(workDirectory=%q net.enableDNS="off")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="%d")
input(type="imtcp" address="127.0.0.1" port="%d")
template(name="plain" type="string" string="%%syslogfacility-text%%.%%syslogseverity-text%% %%syslogtag%%%%msg:::sp-if-no-1st-sp%%%%msg:::drop-last-lf%%\n")
*.* action(type="omfile" file=%q template="plain")
`, dir, port, port, out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(out)
			t.Logf("rsyslog wrote:\n%s", b)
		}
	})
	// -n: no fork, so the pid is rsyslogd's.
	exited := startService(t, pid, filepath.Join(dir, "rsyslogd.out"), dir, bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	eventually(t, 10*time.Second, "rsyslogd listening on udp and tcp", func() bool {
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "rsyslogd.out"))
			t.Fatalf("rsyslogd exited:\n%s", b)
		default:
		}
		return listening(pid, "udp", port) && listening(pid, "tcp", port)
	})
	return out
}

// checkSyslogDriver sends two containers' lines to rsyslogd, one over udp
// in dockerd's default format, one over tcp as RFC 5424, and reads them
// back from rsyslog's file and from the dual-logging cache.
func checkSyslogDriver(t *testing.T, c cli, pid int) {
	t.Helper()
	const port = 5514
	messages := startRsyslog(t, pid, port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c.expect(0, "", "run", "--name", "sl", "--log-driver", "syslog", "--log-opt", "syslog-address=udp://"+addr,
		"--log-opt", "tag={{.Name}}/{{.ImageName}}", "busybox", "sh", "-c", "echo udp one; echo udp two >&2")
	c.expect(0, "", "run", "--name", "st", "--log-driver", "syslog", "--log-opt", "syslog-address=tcp://"+addr,
		"--log-opt", "syslog-format=rfc5424", "--log-opt", "syslog-facility=local3", "--log-opt", "cache-disabled=true",
		"busybox", "sh", "-c", "echo tcp one; echo tcp two")
	id := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.Id}}", "st"))
	daemonPid := fmt.Sprint(pid)
	// stdout at info, stderr at err; RFC 5424's tag is APP-NAME[PROCID].
	want := []string{
		"daemon.info sl/busybox[" + daemonPid + "]: udp one\n", "daemon.err sl/busybox[" + daemonPid + "]: udp two\n",
		"local3.info " + id[:12] + "[" + daemonPid + "] tcp one\n", "local3.info " + id[:12] + "[" + daemonPid + "] tcp two\n",
	}
	var got string
	eventually(t, 10*time.Second, "rsyslog's file holding the four lines with their tags", func() bool {
		b, _ := os.ReadFile(messages)
		got = string(b)
		for _, w := range want {
			if !strings.Contains(got, w) {
				return false
			}
		}
		return true
	})
	t.Logf("rsyslog wrote:\n%s", got)
	if out := c.expect(0, "", "logs", "sl"); out != "udp one\nudp two\n" && out != "udp two\nudp one\n" {
		t.Errorf("docker logs of a syslog container (dual logging): %q", out)
	}
	c.expect(1, "configured logging driver does not support reading", "logs", "st")
}

// forwardEvent is one event a fluentd forward-protocol client sent.
type forwardEvent struct {
	tag       string
	time      time.Time
	eventTime bool // the time came as EventTime (sub-second precision)
	record    map[string]any
}

// receiveForward stands in for fluentd, which has no Debian package here:
// it accepts forward-protocol connections on l and decodes their messages
// ([tag, time, record] or with an option map, the time an integer or the
// EventTime extension) with tinylib/msgp, sending each event on the
// channel until l is closed.
func receiveForward(l net.Listener) <-chan forwardEvent {
	events := make(chan forwardEvent, 64)
	decode := func(conn net.Conn) {
		defer conn.Close()
		r := msgp.NewReader(conn)
		for {
			n, err := r.ReadArrayHeader()
			if err != nil || n < 3 {
				return
			}
			var ev forwardEvent
			if ev.tag, err = r.ReadString(); err != nil {
				return
			}
			if typ, _ := r.NextType(); typ == msgp.ExtensionType {
				kind, data, err := r.ReadExtensionRaw()
				if err != nil || kind != 0 || len(data) != 8 {
					return
				}
				ev.eventTime = true
				ev.time = time.Unix(int64(binary.BigEndian.Uint32(data)), int64(binary.BigEndian.Uint32(data[4:])))
			} else {
				sec, err := r.ReadInt64()
				if err != nil {
					return
				}
				ev.time = time.Unix(sec, 0)
			}
			ev.record = map[string]any{}
			if err := r.ReadMapStrIntf(ev.record); err != nil {
				return
			}
			for ; n > 3; n-- {
				if err := r.Skip(); err != nil {
					return
				}
			}
			events <- ev
		}
	}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go decode(conn)
		}
	}()
	return events
}

// checkFluentdDriver sends two containers' lines to the receiver on
// 127.0.0.1:24224 in the daemon's namespace, one synchronously, one
// async with sub-second precision, and checks tags and dockerd's record
// fields, and docker logs through the dual-logging cache.
func checkFluentdDriver(t *testing.T, c cli, pid int, dir func(string) string) {
	t.Helper()
	var l net.Listener
	runInNetns(t, pid, func() (err error) {
		l, err = net.Listen("tcp", "127.0.0.1:24224")
		return err
	})
	defer l.Close()
	events := receiveForward(l)
	next := func() forwardEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("the forward receiver got no event within 10 s")
		}
		return forwardEvent{}
	}
	c.expect(0, "", "run", "--name", "fl", "--log-driver", "fluentd", "--log-opt", "fluentd-address=127.0.0.1:24224",
		"--log-opt", "tag=docker.{{.Name}}", "busybox", "sh", "-c", "echo fluent one; sleep 0.2; echo fluent two >&2")
	id := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.Id}}", "fl"))
	for _, want := range []map[string]any{
		{"container_id": id, "container_name": "/fl", "source": "stdout", "log": "fluent one"},
		{"container_id": id, "container_name": "/fl", "source": "stderr", "log": "fluent two"},
	} {
		ev := next()
		if ev.tag != "docker.fl" || fmt.Sprint(ev.record) != fmt.Sprint(want) || ev.eventTime || time.Since(ev.time) > time.Minute {
			t.Errorf("fluentd event %+v, want tag docker.fl, an integer time and record %v", ev, want)
		}
	}
	if out := c.expect(0, "", "logs", "fl"); out != "fluent one\nfluent two\n" {
		t.Errorf("docker logs of a fluentd container (dual logging): %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir("fl"), "local-logs", "container-cached.log")); err != nil {
		t.Errorf("the dual-logging cache: %v", err)
	}

	c.expect(0, "", "run", "--name", "fa", "--log-driver", "fluentd", "--log-opt", "fluentd-address=tcp://127.0.0.1:24224",
		"--log-opt", "fluentd-async=true", "--log-opt", "fluentd-sub-second-precision=true", "busybox", "echo", "async line")
	id = strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.Id}}", "fa"))
	if ev := next(); ev.tag != id[:12] || ev.record["log"] != "async line" || !ev.eventTime {
		t.Errorf("async fluentd event %+v, want the default tag %s and an EventTime", ev, id[:12])
	}

	// A unix socket, reached through the file system.
	sock := filepath.Join(t.TempDir(), "fluentd.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	events = receiveForward(ul)
	c.expect(0, "", "run", "--name", "fu", "--log-driver", "fluentd", "--log-opt", "fluentd-address=unix://"+sock,
		"--log-opt", "tag={{.DaemonName}}.{{.Name}}", "busybox", "echo", "over unix")
	if ev := next(); ev.tag != "layerlabd.fu" || ev.record["log"] != "over unix" || ev.record["container_name"] != "/fu" {
		t.Errorf("fluentd event over unix %+v", ev)
	}
}
