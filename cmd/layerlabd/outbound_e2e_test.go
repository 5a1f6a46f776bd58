package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The outbound test's "outside": a test-only subnet (RFC 5737's
// TEST-NET-2) on a veth pair between the daemon's namespace and one the
// test makes.
const (
	outsideDaemonIP = "198.51.100.1"
	outsideIP       = "198.51.100.2"
	outsideLink     = "llout0" // the daemon's end; its peer is llout1
)

// outside is a network namespace joined to the daemon's by a veth pair,
// with the daemon's default route through it and an HTTP server in it
// that records the address each request came from. Nothing leaves it:
// it has no other interface.
type outside struct {
	ns   *os.File // holds the namespace
	srv  *http.Server
	port int
	mu   sync.Mutex
	seen []string // remote addresses, in order
}

// newOutside makes the outside of the daemon's namespace daemonNS; it is
// taken down when the test ends.
func newOutside(t *testing.T, daemonNS string) *outside {
	t.Helper()
	o := &outside{}
	type made struct {
		ns  *os.File
		ln  net.Listener
		err error
	}
	ch := make(chan made, 1)
	go func() {
		// Never unlocked: the thread, moved to the new namespace, ends
		// with this goroutine; the listener's socket stays there.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- made{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		ns, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- made{err: err}
			return
		}
		ln, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			ns.Close()
		}
		ch <- made{ns, ln, err}
	}()
	m := <-ch
	if m.err != nil {
		t.Fatalf("the outside namespace: %v", m.err)
	}
	o.ns, o.port = m.ns, m.ln.Addr().(*net.TCPAddr).Port
	o.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		o.mu.Lock()
		o.seen = append(o.seen, host)
		o.mu.Unlock()
		fmt.Fprintln(w, "hello-from-outside")
	})}
	go func() { _ = o.srv.Serve(m.ln) }()
	t.Cleanup(func() {
		o.srv.Close()
		o.ns.Close()
	})
	if err := o.plug(daemonNS); err != nil {
		t.Fatalf("joining the outside to the daemon's namespace: %v", err)
	}
	return o
}

// plug makes the veth pair and the addresses, and routes the daemon's
// namespace's default through the outside.
func (o *outside) plug(daemonNS string) error {
	dns, err := netns.GetFromPath(daemonNS)
	if err != nil {
		return err
	}
	defer dns.Close()
	h, err := netlink.NewHandleAt(dns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	in, err := netlink.NewHandleAt(netns.NsHandle(o.ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer in.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: outsideLink}, PeerName: "llout1", PeerNamespace: netlink.NsFd(int(o.ns.Fd()))}
	if err := h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth: %w", err)
	}
	for _, side := range []struct {
		h          *netlink.Handle
		name, addr string
	}{{h, outsideLink, outsideDaemonIP}, {in, "llout1", outsideIP}} {
		link, err := side.h.LinkByName(side.name)
		if err != nil {
			return err
		}
		if err := side.h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(side.addr), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return fmt.Errorf("address of %s: %w", side.name, err)
		}
		if err := side.h.LinkSetUp(link); err != nil {
			return err
		}
	}
	link, err := h.LinkByName(outsideLink)
	if err != nil {
		return err
	}
	return h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(outsideIP)})
}

// take returns the addresses requests came from since the last take.
func (o *outside) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.seen
	o.seen = nil
	return out
}

// holdNetns opens the network namespace of process pid, so the test can
// look into it after the process exited; it returns the file's path as
// another process (nsenter) reaches it. Closed when the test ends.
func holdNetns(t *testing.T, pid int) (*os.File, string) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd())
}

// nftState is layerlab's nftables table in the namespace at path: how
// many there are and how many rules each of its chains holds.
func nftState(t testing.TB, path string) (tables int, rules map[string]int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	all, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	rules = map[string]int{}
	if !slices.ContainsFunc(all, func(tb *nftables.Table) bool { return tb.Name == "layerlab" }) {
		return 0, rules
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != "layerlab" {
			continue
		}
		rs, err := conn.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		rules[ch.Name] = len(rs)
	}
	return 1, rules
}

// linksIn lists the interface names in the namespace at path.
func linksIn(t testing.TB, path string) []string {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}

// nsInode is the inode of the namespace file f, as /proc links name it.
func nsInode(t testing.TB, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// checkNetnsGone waits (bounded) until no thread of any process, no file
// of this test and no mount refers to the namespaces (nsInode's names).
func checkNetnsGone(t *testing.T, inodes ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var held []string
		links, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
		fds, _ := filepath.Glob("/proc/self/fd/*")
		for _, l := range append(links, fds...) {
			if target, err := os.Readlink(l); err == nil && slices.Contains(inodes, target) {
				held = append(held, l)
			}
		}
		mounts, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 4 && slices.Contains(inodes, f[3]) {
				held = append(held, "mount "+f[4])
			}
		}
		if len(held) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("network namespaces %v still held by %v", inodes, held)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestEndToEndNetworksOutbound: containers on the default bridge and on
// a user bridge reach a server outside the daemon's namespace through
// outbound NAT, which sees the daemon's address, not the container's;
// --internal and enable_ip_masquerade=false networks do not reach it;
// the option as network inspect shows it; one masquerade rule per
// network with a bridge and masquerade on, gone with the network, the
// table swept by a daemon started after a kill, and nothing left at the
// end: no table, bridge, veth or namespace.
func TestEndToEndNetworksOutbound(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	withLoopback(t, &e)
	e.start(t, "layerlabd.log")
	c := netCLI{cli: e.busyboxCLI(t), e: e}
	held, daemonNS := holdNetns(t, e.d.cmd.Process.Pid)
	if got, err := c.inDaemonNet("cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(got) != "0" {
		t.Fatalf("ip_forward of the daemon's new namespace before any bridge: %q, %v", got, err)
	}
	out := newOutside(t, daemonNS)
	url := fmt.Sprintf("http://%s:%d/", outsideIP, out.port)
	// busybox's timeout, not wget -T (Debian's static busybox 1.35, the
	// image's, segfaults on -T), under a shell that stays PID 1: the
	// kernel drops a SIGTERM to a PID 1 without a handler, so a wget
	// there would outlive its timeout.
	wget := func(secs int) []string {
		return []string{"busybox", "sh", "-c", fmt.Sprintf("timeout %d wget -qO- %s; exit $?", secs, url)}
	}

	reach := func(network string) {
		t.Helper()
		c.expect(0, "hello-from-outside", append([]string{"run", "--rm", "--network", network}, wget(10)...)...)
		if seen := out.take(); len(seen) != 1 || seen[0] != outsideDaemonIP {
			t.Errorf("from network %s the outside saw %v, want one request from %s (masqueraded)", network, seen, outsideDaemonIP)
		}
	}
	reach("bridge")
	c.expect(0, "", "network", "create", "outnet")
	reach("outnet")
	if got, err := c.inDaemonNet("cat", "/proc/sys/net/ipv4/ip_forward"); err != nil || strings.TrimSpace(got) != "1" {
		t.Errorf("ip_forward in the daemon's namespace: %q, %v, want 1", got, err)
	}

	// Without outbound NAT the request leaves with the container's
	// address, which the outside has no route back to; an internal
	// network's containers have no default route at all.
	c.expect(0, "", "network", "create", "--internal", "intnet")
	c.expect(0, "", "network", "create", "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "nomasq")
	c.expect(1, "want true or false", "network", "create", "-o", "com.docker.network.bridge.enable_ip_masquerade=maybe", "bad")
	for _, n := range []string{"intnet", "nomasq"} {
		got, code := c.run(append([]string{"run", "--rm", "--network", n}, wget(2)...)...)
		if code == 0 || strings.Contains(got, "hello-from-outside") {
			t.Errorf("network %s reached the outside: exit %d\n%s", n, code, got)
		}
		t.Logf("from network %s: exit %d (143: timed out)\n%s", n, code, got)
	}
	if seen := out.take(); len(seen) > 0 {
		t.Errorf("the outside saw requests from networks without outbound NAT: %v", seen)
	}
	if _, rules := nftState(t, daemonNS); rules["postrouting"] != 2 {
		t.Errorf("postrouting rules %v, want 2 (bridge and outnet, not intnet or nomasq)", rules)
	}

	// Forwarding is on, yet bridges stay apart, as dockerd's isolation
	// chains keep them: a container on outnet does not reach one on the
	// default bridge, which one beside it on that bridge does.
	c.expect(0, "", "run", "-d", "--name", "target", "busybox", "sleep", "600")
	targetIP := strings.TrimSpace(c.expect(0, "", "inspect", "-f", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "target"))
	ping := []string{"busybox", "sh", "-c", "timeout 3 ping -c1 " + targetIP + "; exit $?"}
	c.expect(0, "1 packets received", append([]string{"run", "--rm", "--network", "bridge"}, ping...)...)
	if got, code := c.run(append([]string{"run", "--rm", "--network", "outnet"}, ping...)...); code == 0 {
		t.Errorf("a container on outnet reached %s on the default bridge:\n%s", targetIP, got)
	}
	c.expect(0, "", "rm", "-f", "target")
	if _, rules := nftState(t, daemonNS); rules["forward"] != 8 {
		t.Errorf("forward rules %v, want 8 (6 for the pairs of bridge, outnet, nomasq; 2 for intnet)", rules)
	}

	var nets []struct {
		Name    string
		Options map[string]string
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "network", "inspect", "bridge", "outnet", "nomasq")), &nets); err != nil || len(nets) != 3 {
		t.Fatalf("network inspect: %v", err)
	}
	for i, want := range []string{"true", "", "false"} {
		if got := nets[i].Options["com.docker.network.bridge.enable_ip_masquerade"]; got != want {
			t.Errorf("network %s: enable_ip_masquerade %q, want %q (options %v)", nets[i].Name, got, want, nets[i].Options)
		}
	}

	c.expect(0, "", "network", "rm", "outnet", "intnet", "nomasq")
	if _, rules := nftState(t, daemonNS); rules["postrouting"] != 1 {
		t.Errorf("postrouting rules %v after the user networks went, want the default bridge's", rules)
	}

	// A daemon killed with its rules in place; the next one in the same
	// namespace sweeps them and writes the bridge's again when a
	// container needs it (the bridge is still there).
	_ = e.d.cmd.Process.Kill()
	<-e.d.exited
	killLeftovers(t)
	if _, rules := nftState(t, daemonNS); rules["postrouting"] != 1 {
		t.Fatalf("the killed daemon's table: rules %v, want its masquerade rule", rules)
	}
	e.d = startDaemonCmd(t, filepath.Join(e.tmp, "layerlabd2.log"), exec.Command("nsenter",
		append([]string{"--net=" + daemonNS, "unshare", "--mount", "--propagation", "slave", e.bin}, e.args()...)...))
	e.d.waitSocket(t, e.sock)
	c = netCLI{cli: cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}, e: e}
	if tables, rules := nftState(t, daemonNS); tables != 0 {
		t.Errorf("the restarted daemon did not sweep the killed one's table: rules %v", rules)
	}
	reach("bridge")
	if _, rules := nftState(t, daemonNS); rules["postrouting"] != 1 {
		t.Errorf("postrouting rules %v after a container on the left bridge, want 1", rules)
	}
	e.d.terminate(t)

	if tables, rules := nftState(t, daemonNS); tables != 0 {
		t.Errorf("layerlab table left after shutdown: rules %v", rules)
	}
	if got := linksIn(t, daemonNS); !slices.Equal(got, []string{"lo", outsideLink}) {
		t.Errorf("links left in the daemon's namespace: %v, want lo and the test's %s", got, outsideLink)
	}
	inodes := []string{nsInode(t, held), nsInode(t, out.ns)}
	if err := deleteLink(daemonNS, outsideLink); err != nil {
		t.Error(err)
	}
	if got := linksIn(t, fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), out.ns.Fd())); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("links left in the outside namespace: %v", got)
	}
	out.srv.Close()
	out.ns.Close()
	held.Close()
	checkNetnsGone(t, inodes...)
}

// deleteLink removes the link name from the namespace at path.
func deleteLink(path, name string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return h.LinkDel(link)
}
