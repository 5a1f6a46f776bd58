package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// VethPrefix starts the name of every host-side veth layerlabd makes, so
// a restarted daemon finds the ones a killed one left.
const VethPrefix = "llv"

// VethName is the host end of the container's veth on the network: a
// hash of both IDs, within the kernel's 15 characters.
func VethName(containerID, networkID string) string {
	sum := sha256.Sum256([]byte(containerID + "/" + networkID))
	return VethPrefix + hex.EncodeToString(sum[:])[:10]
}

// Host is the namespace bridges and host-side veths live in: the
// daemon's own, or the one a test made.
type Host struct{ h *netlink.Handle }

// NewHost opens a netlink handle in ns.
func NewHost(ns netns.NsHandle) (*Host, error) {
	// Route netlink only: with no family named the handle also opens
	// xfrm and netfilter sockets, and a kernel without them (the qemu
	// guest's) fails the whole daemon with "protocol not supported".
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Host{h: h}, nil
}

// Close releases the handle.
func (h *Host) Close() { h.h.Close() }

func notFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// EnsureBridge makes the bridge name with the gateway address on it and
// up; one that exists gets what it lacks. Concurrent calls are fine.
func (h *Host) EnsureBridge(name string, gw netip.Prefix) error {
	link, err := h.h.LinkByName(name)
	if notFound(err) {
		err = h.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating bridge %s: %w", name, err)
		}
		link, err = h.h.LinkByName(name)
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("%s is a %s, not a bridge: give the network another bridge name: %w", name, link.Type(), drivers.ErrAlreadyExists)
	}
	addr := &netlink.Addr{IPNet: ipNet(gw)}
	if err := h.h.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("address %s on bridge %s: %w", gw, name, err)
	}
	if err := h.h.LinkSetUp(link); err != nil {
		return fmt.Errorf("bridge %s up: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// DeleteLink removes the link name; a missing one is not an error.
// Deleting a veth's host end removes its peer in the container too.
func (h *Host) DeleteLink(name string) error {
	link, err := h.h.LinkByName(name)
	if notFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.h.LinkDel(link); err != nil && !notFound(err) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}

// Links lists the names of the links whose name starts with prefix.
func (h *Host) Links(prefix string) ([]string, error) {
	links, err := h.h.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// Iface is the interface an endpoint gets inside the container's
// namespace, whichever link makes it.
type Iface struct {
	NetnsPath string       // the container's namespace
	IfName    string       // its name there, ethN
	Addr      netip.Prefix // the container's address with the subnet's length
	Gateway   netip.Addr   // default route through it when valid
	MAC       string
}

// Veth is one endpoint's interface pair.
type Veth struct {
	Iface
	HostName string // VethName
	Bridge   string // the host end's master
}

// Attach makes the veth pair, its peer born in the container's namespace
// under its final name, then gives the peer its address and the default
// route. On error nothing is left.
func (h *Host) Attach(v Veth) (err error) {
	ns, mac, err := v.target()
	if err != nil {
		return err
	}
	defer ns.Close()
	br, err := h.h.LinkByName(v.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", v.Bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: v.HostName, MasterIndex: br.Attrs().Index},
		PeerName:  v.IfName, PeerHardwareAddr: mac, PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := h.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s for %s: %w", v.HostName, v.NetnsPath, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.DeleteLink(v.HostName))
		}
	}()
	if err := h.h.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s up: %w", v.HostName, err)
	}
	return v.configure(ns)
}

// target opens the container's namespace and parses the MAC the
// interface gets; the caller closes the handle.
func (f Iface) target() (netns.NsHandle, net.HardwareAddr, error) {
	hw, err := net.ParseMAC(f.MAC)
	if err != nil {
		return 0, nil, fmt.Errorf("MAC %q: %w: %w", f.MAC, err, drivers.ErrInvalidArgument)
	}
	ns, err := netns.GetFromPath(f.NetnsPath)
	if err != nil {
		return 0, nil, fmt.Errorf("network namespace %s: %w", f.NetnsPath, err)
	}
	return ns, hw, nil
}

// configure gives the interface in ns (the container's namespace, open)
// its address, brings it up and, when the gateway is valid, routes the
// default through it.
func (f Iface) configure(ns netns.NsHandle) error {
	ifname, addr, gw := f.IfName, f.Addr, f.Gateway
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer in.Close()
	link, err := in.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("%s in the container's namespace: %w", ifname, err)
	}
	if err := in.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, ifname, err)
	}
	if err := in.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", ifname, err)
	}
	if gw.IsValid() {
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw.AsSlice()}
		if err := in.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// Macvlan is one endpoint's macvlan interface on a parent of the host.
type Macvlan struct {
	Iface
	Parent string
}

// AttachMacvlan makes a bridge-mode macvlan on the parent, born in the
// container's namespace under its final name, and configures it. It dies
// with the namespace; on error nothing is left.
func (h *Host) AttachMacvlan(m Macvlan) (err error) {
	ns, mac, err := m.target()
	if err != nil {
		return err
	}
	defer ns.Close()
	parent, err := h.h.LinkByName(m.Parent)
	if err != nil {
		return fmt.Errorf("macvlan parent %s: %w: %w", m.Parent, err, drivers.ErrFailedPrecondition)
	}
	link := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: m.IfName, ParentIndex: parent.Attrs().Index,
		HardwareAddr: mac, Namespace: netlink.NsFd(int(ns))}, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := h.h.LinkAdd(link); err != nil {
		return fmt.Errorf("macvlan on %s for %s: %w", m.Parent, m.NetnsPath, err)
	}
	if err := m.configure(ns); err != nil {
		return errors.Join(err, DeleteByMAC(m.NetnsPath, m.MAC))
	}
	return nil
}

// DeleteByMAC removes the interface with that MAC from the namespace at
// path (a macvlan lives there only); none is not an error.
func DeleteByMAC(path, mac string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer in.Close()
	links, err := in.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == mac {
			return in.LinkDel(l)
		}
	}
	return nil
}

// FreeIfName is the first ethN not in the namespace at path.
func FreeIfName(path string) (string, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return "", err
	}
	defer ns.Close()
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return "", err
	}
	defer in.Close()
	links, err := in.LinkList()
	if err != nil {
		return "", err
	}
	taken := map[string]bool{}
	for _, l := range links {
		taken[l.Attrs().Name] = true
	}
	for i := 0; ; i++ {
		if n := "eth" + strconv.Itoa(i); !taken[n] {
			return n, nil
		}
	}
}

// NewNetns makes a network namespace with lo up and keeps it as a bind
// mount of its nsfs file at path, so a container's init can join it by
// path and it outlives no one but its bind mount and members.
func NewNetns(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("network namespace file: %w", err)
	}
	f.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(path)
		}
	}()
	// unshare acts on the calling thread: make the namespace on a locked
	// thread and put the thread back before Go may use it elsewhere.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("unshare a network namespace: %w", err)
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	mountErr := mount.Filesystem(self, path, "bind", "bind")
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so it ends with this goroutine
		// instead of serving others in the wrong namespace.
		return errors.Join(mountErr, fmt.Errorf("back to the daemon's network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	if mountErr != nil {
		return mountErr
	}
	if err := loopbackUp(path); err != nil {
		return errors.Join(err, RemoveNetns(path))
	}
	return nil
}

func loopbackUp(path string) error {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	in, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer in.Close()
	lo, err := in.LinkByName("lo")
	if err != nil {
		return err
	}
	return in.LinkSetUp(lo)
}

// RemoveNetns unmounts and removes a namespace file; the namespace dies
// with its last member. A missing file is not an error.
func RemoveNetns(path string) error {
	if err := mount.UnmountAll(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
