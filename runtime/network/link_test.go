package network

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/layerlab/layerlab/drivers/feature"
)

// nsForTest makes a network namespace file the test removes; every
// link the test makes lives in namespaces made this way.
func nsForTest(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := NewNetns(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveNetns(path); err != nil {
			t.Error(err)
		}
	})
	return path
}

// TestAttach plugs a container namespace into a bridge in a namespace
// the test made, as a container start does, and unplugs it: the bridge
// with its gateway, the veth with its peer named eth0 with the address,
// MAC and default route, the next free name, and the removals.
func TestAttach(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "network namespaces and links need root")
	}
	dir := t.TempDir()
	hostNS, err := netns.GetFromPath(nsForTest(t, dir, "host"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(hostNS)
	hostNS.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctrPath := nsForTest(t, dir, "ctr")
	gw := netip.MustParsePrefix("10.88.0.1/24")
	for range 2 { // the second finds it made
		if err := h.EnsureBridge("lltest0", gw); err != nil {
			t.Fatal(err)
		}
	}
	ip := netip.MustParseAddr("10.88.0.2")
	v := Veth{HostName: VethName("c1", "n1"), Bridge: "lltest0",
		Iface: Iface{NetnsPath: ctrPath, IfName: "eth0", Addr: netip.PrefixFrom(ip, 24), Gateway: gw.Addr(), MAC: MAC(ip)}}
	if err := h.Attach(v); err != nil {
		t.Fatal(err)
	}
	ctrNS, err := netns.GetFromPath(ctrPath)
	if err != nil {
		t.Fatal(err)
	}
	in, err := netlink.NewHandleAt(ctrNS)
	ctrNS.Close() // an open file of the mount would keep it busy
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eth0, err := in.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().HardwareAddr.String() != "02:42:0a:58:00:02" || eth0.Attrs().OperState == netlink.OperDown {
		t.Errorf("eth0: MAC %s, state %s", eth0.Attrs().HardwareAddr, eth0.Attrs().OperState)
	}
	addrs, _ := in.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.0.2/24" {
		t.Errorf("eth0 addresses %v", addrs)
	}
	routes, _ := in.RouteList(eth0, netlink.FAMILY_V4)
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Gw.String() == "10.88.0.1" }) {
		t.Errorf("no default route via 10.88.0.1: %v", routes)
	}
	if n, err := FreeIfName(ctrPath); err != nil || n != "eth1" {
		t.Errorf("FreeIfName = %s, %v; want eth1", n, err)
	}
	names, err := h.Links(VethPrefix)
	if err != nil || !slices.Equal(names, []string{v.HostName}) {
		t.Errorf("layerlab veths %v, %v; want %s", names, err, v.HostName)
	}
	// A second attach to a bridge that does not exist leaves nothing.
	bad := v
	bad.HostName, bad.Bridge, bad.IfName = VethName("c2", "n1"), "nosuch", "eth1"
	if err := h.Attach(bad); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("attach to a missing bridge: %v", err)
	}
	for range 2 { // the second finds it gone
		if err := h.DeleteLink(v.HostName); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := in.LinkByName("eth0"); err == nil {
		t.Errorf("eth0 outlived its veth's host end")
	}
	if names, _ := h.Links(VethPrefix); len(names) != 0 {
		t.Errorf("veths left: %v", names)
	}
	if err := h.DeleteLink("lltest0"); err != nil {
		t.Fatal(err)
	}
	if names, _ := h.Links("lltest"); len(names) != 0 {
		t.Errorf("bridge left: %v", names)
	}
	if err := RemoveNetns(ctrPath); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ctrPath); !os.IsNotExist(err) {
		t.Errorf("namespace file left: %v", err)
	}
}

func TestVethName(t *testing.T) {
	a, b := VethName(strings.Repeat("a", 64), "n1"), VethName(strings.Repeat("a", 64), "n2")
	if a == b || len(a) > 15 || !strings.HasPrefix(a, VethPrefix) {
		t.Errorf("VethName: %s and %s", a, b)
	}
}
