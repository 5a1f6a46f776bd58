package main

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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// inspectNet is what the network test reads of docker inspect.
type inspectNet struct {
	NetworkSettings struct {
		IPAddress, Gateway, MacAddress, SandboxKey string
		IPPrefixLen                                int
		Ports                                      map[string][]struct{ HostIP, HostPort string }
		Networks                                   map[string]struct {
			IPAddress, Gateway, MacAddress, NetworkID string
			IPPrefixLen                               int
			Aliases                                   []string
		}
	}
	HostConfig struct{ NetworkMode string }
}

// netCLI is the network test's docker CLI with its helpers.
type netCLI struct {
	cli
	e testEnv
}

func (c netCLI) inspect(name string) inspectNet {
	c.t.Helper()
	var out []inspectNet
	if err := json.Unmarshal([]byte(c.expect(0, "", "inspect", name)), &out); err != nil || len(out) != 1 {
		c.t.Fatalf("docker inspect %s: %v", name, err)
	}
	return out[0]
}

// inDaemonNet runs a command in the daemon's network namespace (the one
// startDaemon made), returning its output and error.
func (c netCLI) inDaemonNet(name string, args ...string) (string, error) {
	out, err := inNetns(c.e.d.cmd.Process.Pid, name, args...).CombinedOutput()
	return string(out), err
}

// fetch GETs url from the daemon's network namespace (the socket is made
// there; the host's static busybox wget crashes), retrying for up to ten
// seconds while the server in the container comes up.
func (c netCLI) fetch(url string) string {
	c.t.Helper()
	pid := c.e.d.cmd.Process.Pid
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNetns(ctx, pid, network, addr)
		}}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("status %d, %v", resp.StatusCode, rerr)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("GET %s from the daemon's namespace: %v\nlayerlabd log:\n%s", url, err, c.d.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialInNetns dials from the network namespace of process pid: the
// socket is made on a thread moved there, and keeps the namespace.
func dialInNetns(ctx context.Context, pid int, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := netns.GetFromPid(pid)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if serr := netns.Set(self); serr != nil {
		// Left locked: the thread dies with this goroutine.
		return nil, errors.Join(err, serr)
	}
	runtime.UnlockOSThread()
	return conn, err
}

// links lists the interface names ip link shows in the daemon's namespace.
func (c netCLI) links() []string {
	c.t.Helper()
	out, err := c.inDaemonNet("ip", "-o", "link", "show")
	if err != nil {
		c.t.Fatalf("ip link in the daemon's namespace: %v\n%s", err, out)
	}
	return ifNames(out)
}

// ifNames reads the names out of `ip -o link` output ("2: eth0@if5: ...").
func ifNames(out string) []string {
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	return names
}

// httpdLine is a busybox shell line that serves body over HTTP on port.
func httpdLine(port int, body string) string {
	return "mkdir -p /www && echo " + body + " > /www/index.html && exec httpd -f -p " + strconv.Itoa(port) + " -h /www"
}

// TestEndToEndNetworks walks issue 14's must-shows with the real docker
// CLI against a layerlabd in a network namespace the test made (no
// traffic leaves it): published ports answered through the userland
// proxy from the daemon's namespace, -P and docker port, --link's hosts
// entry and environment, none, host and container:X modes, a user bridge
// with --subnet/--ip-range/--gateway and a static --ip, the embedded DNS
// server's aliases in round robin, 50 containers started at once on one
// bridge, connect/disconnect adding and removing an interface in a
// running container, macvlan on a parent, network ls/inspect/rm/prune
// and their refusals, network events, no veth, bridge or namespace file
// left at the end, and a killed daemon's namespace files swept.
func TestEndToEndNetworks(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	withLoopback(t, &e)
	e.start(t, "layerlabd.log")
	c := netCLI{cli: e.busyboxCLI(t), e: e}
	since := strconv.FormatInt(time.Now().Unix()-1, 10)

	ls := c.expect(0, "bridge", "network", "ls")
	for _, want := range []string{"host", "none"} {
		if !strings.Contains(ls, want) {
			t.Errorf("docker network ls lacks %s:\n%s", want, ls)
		}
	}

	// -p 127.0.0.1:8080:80 on the default bridge, answered from the
	// daemon's namespace through the proxy.
	c.expect(0, "", "run", "-d", "--name", "web", "-p", "127.0.0.1:8080:80", "busybox", "sh", "-c", httpdLine(80, "hello-from-web"))
	if got := c.fetch("http://127.0.0.1:8080/"); strings.TrimSpace(got) != "hello-from-web" {
		t.Errorf("wget 127.0.0.1:8080: %q", got)
	}
	c.expect(0, "80/tcp -> 127.0.0.1:8080", "port", "web")
	web := c.inspect("web")
	ns := web.NetworkSettings
	if !strings.HasPrefix(ns.IPAddress, "172.29.") || ns.Gateway != "172.29.0.1" || ns.IPPrefixLen != 16 || !strings.HasPrefix(ns.MacAddress, "02:42:") ||
		ns.Networks["bridge"].IPAddress != ns.IPAddress || web.HostConfig.NetworkMode != "bridge" {
		t.Errorf("inspect web: %+v", web)
	}
	if b := ns.Ports["80/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "8080" {
		t.Errorf("inspect web: Ports %+v", ns.Ports)
	}
	if !strings.Contains(c.expect(0, "", "ps"), "127.0.0.1:8080->80/tcp") {
		t.Errorf("docker ps lacks the published port")
	}
	// The container reaches its gateway, the daemon's namespace.
	c.expect(0, "1 packets received", "exec", "web", "ping", "-c1", "-W", "2", "172.29.0.1")
	hosts := c.expect(0, ns.IPAddress, "exec", "web", "cat", "/etc/hosts")
	if !strings.Contains(hosts, "localhost") {
		t.Errorf("/etc/hosts of web:\n%s", hosts)
	}
	c.expect(0, "", "exec", "web", "cat", "/etc/resolv.conf")

	// --link: the target's address in /etc/hosts under the alias, and
	// Docker's legacy environment.
	c.expect(0, "", "run", "-d", "--name", "db", "--expose", "5432", "-e", "DBPASS=secret", "busybox", "sleep", "1000")
	dbIP := c.inspect("db").NetworkSettings.IPAddress
	linked := c.expect(0, "", "run", "--rm", "--link", "db:mydb", "busybox", "sh", "-c", "env; cat /etc/hosts; ping -c1 -W 2 mydb")
	for _, want := range []string{"MYDB_PORT_5432_TCP_ADDR=" + dbIP, "MYDB_PORT=tcp://" + dbIP + ":5432", "MYDB_ENV_DBPASS=secret", "MYDB_NAME=/", dbIP + "\tmydb ", "1 packets received"} {
		if !strings.Contains(linked, want) {
			t.Errorf("--link db:mydb: output lacks %q:\n%s", want, linked)
		}
	}
	c.expect(125, "could not get container for nosuch", "run", "--rm", "--link", "nosuch:x", "busybox", "true")
	c.expect(125, "can't be used with links", "run", "--rm", "--net", "host", "--link", "db", "busybox", "true")
	c.expect(0, "", "rm", "-f", "db")

	// -P publishes the exposed port on a free host port docker port names.
	c.expect(0, "", "run", "-d", "--name", "pub", "--expose", "7000", "-P", "busybox", "sh", "-c", httpdLine(7000, "hello-from-pub"))
	c.expect(0, "7000/tcp -> 0.0.0.0:", "port", "pub")
	port := strings.TrimSpace(c.expect(0, "0.0.0.0:", "port", "pub", "7000"))
	_, hostPort, _ := strings.Cut(port, "0.0.0.0:")
	if got := c.fetch("http://127.0.0.1:" + strings.TrimSpace(hostPort) + "/"); strings.TrimSpace(got) != "hello-from-pub" {
		t.Errorf("wget the -P port %s: %q", hostPort, got)
	}
	c.expect(0, "", "rm", "-f", "pub")

	// none has only lo; container:web shares web's interfaces; host sees
	// the daemon's namespace (its bridge).
	if got := ifNames(c.expect(0, "", "run", "--rm", "--net", "none", "busybox", "ip", "-o", "link")); strings.Join(got, ",") != "lo" {
		t.Errorf("--net none: interfaces %v, want only lo", got)
	}
	c.expect(0, ns.IPAddress+"/16", "run", "--rm", "--net", "container:web", "busybox", "ip", "-o", "addr", "show", "eth0")
	if got := ifNames(c.expect(0, "", "run", "--rm", "--net", "host", "busybox", "ip", "-o", "link")); !contains(got, "layerlab0") {
		t.Errorf("--net host: interfaces %v, want the daemon's namespace's (layerlab0)", got)
	}

	// A user bridge with its address plan; a static --ip and an
	// automatic one from the range; the two reach each other.
	c.expect(0, "", "network", "create", "--subnet", "10.77.0.0/24", "--ip-range", "10.77.0.128/25", "--gateway", "10.77.0.1", "--label", "team=a", "net1")
	c.expect(1, "already exists", "network", "create", "net1")
	c.expect(1, "overlaps", "network", "create", "--subnet", "10.77.0.0/16", "net2")
	c.expect(0, "", "run", "-d", "--name", "ca", "--network", "net1", "--ip", "10.77.0.10", "--network-alias", "al", "busybox", "sleep", "1000")
	c.expect(0, "", "run", "-d", "--name", "cb", "--network", "net1", "busybox", "sleep", "1000")
	a, b := c.inspect("ca"), c.inspect("cb")
	if n := a.NetworkSettings.Networks["net1"]; n.IPAddress != "10.77.0.10" || n.Gateway != "10.77.0.1" || n.IPPrefixLen != 24 || !contains(n.Aliases, "al") {
		t.Errorf("inspect a on net1: %+v", n)
	}
	if n := b.NetworkSettings.Networks["net1"]; n.IPAddress != "10.77.0.128" {
		t.Errorf("inspect b on net1: %+v, want the first address of the range 10.77.0.128", n)
	}
	c.expect(0, "1 packets received", "exec", "cb", "ping", "-c1", "-W", "2", "10.77.0.10")
	c.expect(125, "already in use", "run", "--rm", "--network", "net1", "--ip", "10.77.0.10", "busybox", "true")
	c.expect(125, "user defined networks", "run", "--rm", "--ip", "172.29.9.9", "busybox", "true")
	c.expect(125, "not found", "run", "--rm", "--network", "nosuch", "busybox", "true")
	var nets []struct {
		Name, Driver string
		IPAM         struct {
			Config []struct{ Subnet, IPRange, Gateway string }
		}
		Containers map[string]struct{ Name, IPv4Address string }
		Labels     map[string]string
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "network", "inspect", "net1")), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("network inspect net1: %v", err)
	}
	if n := nets[0]; n.Driver != "bridge" || len(n.IPAM.Config) != 1 || n.IPAM.Config[0] != (struct{ Subnet, IPRange, Gateway string }{"10.77.0.0/24", "10.77.0.128/25", "10.77.0.1"}) ||
		len(n.Containers) != 2 || n.Labels["team"] != "a" {
		t.Errorf("network inspect net1: %+v", n)
	}
	if got := c.expect(0, "net1", "network", "ls", "--filter", "label=team=a", "--format", "{{.Name}}"); strings.TrimSpace(got) != "net1" {
		t.Errorf("network ls --filter label=team=a: %q", got)
	}
	if got := c.expect(0, "", "network", "ls", "--filter", "type=builtin", "--format", "{{.Name}}"); strings.Join(strings.Fields(got), ",") != "bridge,host,none" {
		t.Errorf("network ls --filter type=builtin: %q", got)
	}

	// The embedded DNS server: three containers share an alias, a
	// fourth's nslookup gets all three and its pings reach more than one.
	var aliasIPs []string
	for _, n := range []string{"as-1", "as-2", "as-3"} {
		c.expect(0, "", "run", "-d", "--name", n, "--network", "net1", "--net-alias", "as1", "busybox", "sleep", "1000")
		aliasIPs = append(aliasIPs, c.inspect(n).NetworkSettings.Networks["net1"].IPAddress)
	}
	look := c.expect(0, "", "exec", "cb", "nslookup", "as1")
	for _, ip := range aliasIPs {
		if !strings.Contains(look, ip) {
			t.Errorf("nslookup as1 lacks %s:\n%s", ip, look)
		}
	}
	c.expect(0, "10.77.0.10", "exec", "cb", "nslookup", "ca")
	// The pings go from ca (10.77.0.10): glibc's getaddrinfo orders
	// answers by the longest prefix shared with the source address (RFC
	// 6724 rule 9), which would pin cb (10.77.0.128) to 10.77.0.129; from
	// ca all three share 24 bits, so the server's order decides.
	reached := map[string]bool{}
	for i := 0; i < 20 && len(reached) < 2; i++ {
		out := c.expect(0, "1 packets received", "exec", "ca", "ping", "-c1", "-W", "2", "as1")
		for _, ip := range aliasIPs {
			if strings.Contains(out, "("+ip+")") {
				reached[ip] = true
			}
		}
	}
	if len(reached) < 2 {
		t.Errorf("20 pings of as1 reached only %v, want round robin over %v", reached, aliasIPs)
	}
	c.expect(0, "", "rm", "-f", "as-1", "as-2", "as-3")

	fiftyOnOneBridge(t, c, "net1")

	// connect and disconnect add and remove an interface in a running
	// container.
	c.expect(0, "", "network", "connect", "net1", "web")
	c.expect(0, "10.77.0.", "exec", "web", "ip", "-o", "addr", "show", "eth1")
	c.expect(0, "1 packets received", "exec", "web", "ping", "-c1", "-W", "2", "10.77.0.10")
	c.expect(0, "", "network", "disconnect", "net1", "web")
	if got := ifNames(c.expect(0, "", "exec", "web", "ip", "-o", "link")); contains(got, "eth1") {
		t.Errorf("after disconnect web still has eth1: %v", got)
	}
	// A stopped container is connected too: its next start has both.
	c.expect(0, "", "stop", "-t", "0", "cb")
	c.expect(0, "", "network", "connect", "bridge", "cb")
	c.expect(0, "", "start", "cb")
	if got := ifNames(c.expect(0, "", "exec", "cb", "ip", "-o", "link")); !contains(got, "eth0") || !contains(got, "eth1") {
		t.Errorf("b after connect while stopped and start: %v, want eth0 and eth1", got)
	}

	// Refusals, with dockerd's statuses.
	c.expect(1, "active endpoints", "network", "rm", "net1")
	c.expect(1, "pre-defined", "network", "rm", "bridge")
	client := apiClient(e.sock)
	checkAPIErrors(t, client, []apiError{
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"bad","IPAM":{"Config":[{"Subnet":"10.1.2.3/33"}]}}`), 400, "invalid subnet"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"bad","IPAM":{"Config":[{"Subnet":"10.1.0.0/16","Gateway":"10.2.0.1"}]}}`), 400, "gateway"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"net1"}`), 409, "already exists"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"m","Driver":"ipvlan"}`), 501, "not supported"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"m","Scope":"swarm"}`), 501, "local"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"m","EnableIPv6":true}`), 501, "IPv6"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"m","Driver":"macvlan"}`), 400, "parent"},
		{"POST", "/v1.41/networks/create", []byte(`{"Name":"m","Driver":"macvlan","Options":{"parent":"nosuch0"}}`), 400, "does not exist"},
		{"POST", "/v1.41/networks/create", []byte(`{not json`), 400, "invalid JSON"},
		{"DELETE", "/v1.41/networks/net1", nil, 403, "active endpoints"},
		{"DELETE", "/v1.41/networks/none", nil, 403, "pre-defined"},
		{"GET", "/v1.41/networks/nosuch", nil, 404, "not found"},
		{"POST", "/v1.41/networks/host/connect", []byte(`{"Container":"web"}`), 403, "host"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"HostConfig":{"PortBindings":{"80/sctp":[{"HostPort":"1"}]}}}`), 400, "protocol"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"99999"}]}}}`), 400, "invalid port"},
		{"POST", "/v1.41/containers/create", []byte(`{"Image":"busybox","Cmd":["true"],"HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"nope"}]}}}`), 400, "host IP"},
	})
	resp, err := client.Get("http://layerlabd/v1.41/networks?filters=%7Bbad")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /networks with bad filters: %d, want 400", resp.StatusCode)
	}

	// macvlan on a parent the test makes in the daemon's namespace (a
	// veth pair: this kernel has no dummy links): the containers get
	// addresses from the subnet and reach each other through the parent.
	for _, args := range [][]string{{"link", "add", "llpar0", "type", "veth", "peer", "name", "llpar1"},
		{"link", "set", "llpar0", "up"}, {"link", "set", "llpar1", "up"}} {
		if out, err := c.inDaemonNet("ip", args...); err != nil {
			t.Fatalf("ip %v in the daemon's namespace: %v\n%s", args, err, out)
		}
	}
	c.expect(0, "", "network", "create", "-d", "macvlan", "--subnet", "10.99.0.0/24", "-o", "parent=llpar0", "mv")
	c.expect(0, "", "run", "-d", "--name", "mv1", "--network", "mv", "busybox", "sleep", "1000")
	other := c.expect(0, "inet 10.99.0.3/24", "run", "--rm", "--network", "mv", "busybox", "sh", "-c", "ip -o addr show eth0; ping -c1 -W 2 10.99.0.2")
	if !strings.Contains(other, "1 packets received") {
		t.Errorf("a macvlan container did not reach the other:\n%s", other)
	}
	c.expect(0, "10.99.0.2/24", "exec", "mv1", "ip", "-o", "addr", "show", "eth0")
	mvPid := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.State.Pid}}", "mv1"))
	if out, err := exec.Command("nsenter", "--net=/proc/"+mvPid+"/ns/net", "ip", "-d", "link", "show", "eth0").CombinedOutput(); err != nil || !strings.Contains(string(out), "macvlan mode bridge") {
		t.Errorf("mv1's eth0 is not a bridge-mode macvlan: %v\n%s", err, out)
	}
	c.expect(0, "", "rm", "-f", "mv1")
	c.expect(0, "mv", "network", "rm", "mv")
	if out, err := c.inDaemonNet("ip", "link", "del", "llpar0"); err != nil {
		t.Errorf("ip link del llpar0: %v\n%s", err, out)
	}

	// Teardown: containers and user networks go with their veths,
	// namespaces and bridges.
	c.expect(0, "", "rm", "-f", "web", "ca", "cb")
	c.expect(0, "net1", "network", "rm", "net1")
	if _, rules := nftState(t, fmt.Sprintf("/proc/%d/ns/net", e.d.cmd.Process.Pid)); rules["postrouting"] != 1 {
		t.Errorf("masquerade rules %v once net1 went, want the default bridge's only", rules)
	}
	c.expect(0, "", "network", "create", "spare")
	if got := c.expect(0, "spare", "network", "ls", "--filter", "dangling=true", "--format", "{{.Name}}"); strings.TrimSpace(got) != "spare" {
		t.Errorf("network ls --filter dangling=true: %q", got)
	}
	if got := c.expect(0, "", "network", "prune", "-f", "--filter", "until=2000-01-01T00:00:00Z"); strings.Contains(got, "spare") {
		t.Errorf("prune --filter until=2000 removed a network created now:\n%s", got)
	}
	c.expect(0, "spare", "network", "prune", "-f")
	events := c.expect(0, "", "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10), "--filter", "type=network")
	for _, want := range []string{"network create", "network connect", "network disconnect", "network destroy"} {
		if !strings.Contains(events, want) {
			t.Errorf("network events lack %q:\n%s", want, events)
		}
	}
	for _, l := range c.links() {
		if strings.HasPrefix(l, "llv") || strings.HasPrefix(l, "llbr-") {
			t.Errorf("link %s left behind in the daemon's namespace", l)
		}
	}
	if left, _ := os.ReadDir(filepath.Join(e.tmp, "exec", "netns")); len(left) > 0 {
		t.Errorf("network namespace files left behind: %v", left)
	}

	// A daemon killed with containers running: its successor sweeps the
	// namespace files and reports the containers exited.
	c.expect(0, "", "run", "-d", "--name", "orphan", "busybox", "sleep", "1000")
	if _, err := os.Stat(filepath.Join(e.tmp, "exec", "netns")); err != nil {
		t.Fatal(err)
	}
	_ = e.d.cmd.Process.Kill()
	<-e.d.exited
	killLeftovers(t)
	e.start(t, "layerlabd2.log")
	c = netCLI{cli: cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}, e: e}
	held, nsPath := holdNetns(t, e.d.cmd.Process.Pid)
	c.expect(0, "exited", "inspect", "-f", "{{.State.Status}}", "orphan")
	if left, _ := os.ReadDir(filepath.Join(e.tmp, "exec", "netns")); len(left) > 0 {
		t.Errorf("network namespace files the killed daemon left were not swept: %v", left)
	}
	c.expect(0, "", "start", "orphan")
	c.expect(0, "", "rm", "-f", "orphan")
	for _, l := range c.links() {
		if strings.HasPrefix(l, "llv") {
			t.Errorf("veth %s left behind", l)
		}
	}
	e.d.terminate(t)
	// The namespace the daemon ran in, after it: no table, bridge or
	// veth, and nothing but the test holding it.
	if tables, rules := nftState(t, nsPath); tables != 0 {
		t.Errorf("layerlab nftables table left after shutdown: rules %v", rules)
	}
	if got := linksIn(t, nsPath); strings.Join(got, ",") != "lo" {
		t.Errorf("links left after shutdown: %v, want only lo", got)
	}
	ino := nsInode(t, held)
	held.Close()
	checkNetnsGone(t, ino)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestEndToEndNetworksDockerPy: networks.create/list/get/remove/prune,
// a container on a user network with a static address, network.connect
// and disconnect (testdata/dockerpy_networks.py).
func TestEndToEndNetworksDockerPy(t *testing.T) {
	runDockerPy(t, "dockerpy_networks.py")
}

// rawCall sends a JSON request without touching t, for goroutines.
func rawCall(client *http.Client, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "http://layerlabd/v1.41"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// fiftyOnOneBridge creates and starts 50 containers on the network at
// once (issue 14's concurrency target): none may fail, each gets its own
// address, the first reaches the last by name, and all go again.
func fiftyOnOneBridge(t *testing.T, c netCLI, net string) {
	t.Helper()
	client := apiClient(c.sock)
	const n = 50
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("fifty-%02d", i)
			req := map[string]any{"Image": "busybox", "Cmd": []string{"sleep", "1000"}, "HostConfig": map[string]any{"NetworkMode": net}}
			status, data, err := rawCall(client, "POST", "/containers/create?name="+name, req)
			if err == nil && status != http.StatusCreated {
				err = fmt.Errorf("create %s: %d %s", name, status, data)
			}
			if err == nil {
				if status, data, err = rawCall(client, "POST", "/containers/"+name+"/start", nil); err == nil && status != http.StatusNoContent {
					err = fmt.Errorf("start %s: %d %s", name, status, data)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("50 concurrent starts on %s: %v\nlayerlabd log:\n%s", net, err, c.d.logText())
	}
	ips := map[string]bool{}
	for i := range n {
		ins := c.inspectQuiet(fmt.Sprintf("fifty-%02d", i))
		ips[ins.NetworkSettings.Networks[net].IPAddress] = true
	}
	if len(ips) != n {
		t.Errorf("50 containers got %d distinct addresses: %v", len(ips), ips)
	}
	c.expect(0, "1 packets received", "exec", "fifty-00", "ping", "-c1", "-W", "2", "fifty-49")
	errs = make([]error, n)
	for i := range n {
		wg.Go(func() {
			if status, data, err := rawCall(client, "DELETE", fmt.Sprintf("/containers/fifty-%02d?force=1", i), nil); err != nil || status != http.StatusNoContent {
				errs[i] = fmt.Errorf("rm fifty-%02d: %d %s %v", i, status, data, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Errorf("removing the 50: %v", err)
	}
}

// inspectQuiet is inspect without logging the whole document.
func (c netCLI) inspectQuiet(name string) inspectNet {
	c.t.Helper()
	out, code := c.run("inspect", name)
	var got []inspectNet
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got) != 1 {
		c.t.Fatalf("docker inspect %s: exit %d, %v:\n%s", name, code, err, out)
	}
	return got[0]
}

// TestEndToEndNetworksNAT publishes with nftables DNAT
// (--userland-proxy=false): the port answers through the rules from the
// daemon's namespace, docker port names it, the DNAT rules go with the
// last published container (the bridge's masquerade stays with the
// bridge) and the table at shutdown.
func TestEndToEndNetworksNAT(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	withLoopback(t, &e)
	e.opts = []string{"--userland-proxy=false"}
	e.start(t, "layerlabd.log")
	c := netCLI{cli: e.busyboxCLI(t), e: e}
	c.expect(0, "", "run", "-d", "--name", "web", "-p", "8082:80", "busybox", "sh", "-c", httpdLine(80, "hello-through-dnat"))
	c.expect(0, "80/tcp -> 0.0.0.0:8082", "port", "web")
	held, nsPath := holdNetns(t, e.d.cmd.Process.Pid)
	if tables, rules := nftState(t, nsPath); tables != 1 || rules["prerouting"] != 1 || rules["output"] != 1 || rules["postrouting"] != 1 {
		t.Errorf("%d layerlab nftables tables, rules %v with a port published, want 1 with a DNAT rule per chain and the bridge's masquerade", tables, rules)
	}
	// To the bridge's address: the output chain's DNAT takes it to the
	// container (the ports' listeners only hold them).
	if got := c.fetch("http://172.29.0.1:8082/"); strings.TrimSpace(got) != "hello-through-dnat" {
		t.Errorf("GET through DNAT: %q", got)
	}
	c.expect(0, "", "rm", "-f", "web")
	if _, rules := nftState(t, nsPath); rules["prerouting"]+rules["output"] != 0 || rules["postrouting"] != 1 {
		t.Errorf("rules %v after the container went, want only the bridge's masquerade", rules)
	}
	e.d.terminate(t)
	if tables, rules := nftState(t, nsPath); tables != 0 {
		t.Errorf("layerlab table left after shutdown: rules %v", rules)
	}
	held.Close()
}
