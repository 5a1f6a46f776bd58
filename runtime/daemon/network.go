package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"
	nettypes "github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/network"
)

// DefaultBridge is the Linux bridge of the default "bridge" network
// unless --bridge names another: never docker0, so layerlabd and a
// dockerd never share one.
const DefaultBridge = "layerlab0"

// netState is a running container's network state the daemon keeps in
// memory: its port proxy (or, with NAT, the listeners holding the ports)
// and what it published.
type netState struct {
	proxy     *network.Proxy
	published []network.Published
}

// openNetworks opens the network store (making the predefined networks)
// and a netlink handle in the daemon's namespace.
func (d *Daemon) openNetworks() error {
	bridge := d.cfg.Bridge
	switch bridge {
	case "":
		bridge = DefaultBridge
	case "none":
		bridge = ""
	default:
		if len(bridge) > 15 || strings.ContainsAny(bridge, "/ :") {
			return fmt.Errorf("--bridge %q: want an interface name of at most 15 characters, or none: %w", bridge, drivers.ErrInvalidArgument)
		}
	}
	var err error
	if d.nets, err = network.NewStore(d.db, bridge); err != nil {
		return err
	}
	self, err := netns.Get()
	if err != nil {
		return fmt.Errorf("the daemon's network namespace: %w", err)
	}
	defer self.Close()
	if d.host, err = network.NewHost(self); err != nil {
		return err
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	d.dns = network.NewResolver(d.dnsLookup, hostResolv)
	// The table a killed daemon left goes, whichever way this one
	// publishes. Without nftables the networks still work, locally.
	nat := network.NewNAT(-1)
	if err := nat.Sweep(); err != nil {
		if d.cfg.NATPorts {
			return fmt.Errorf("--userland-proxy=false publishes through nftables, which fails here: %w", err)
		}
		d.cfg.Log.Warn("nftables is unavailable: outbound NAT is off, containers on bridge networks reach only their bridges and this network namespace", "err", err)
		return nil
	}
	d.nat = nat
	return nil
}

// netnsPath is the bind-mounted network namespace of a container with
// its own network.
func (d *Daemon) netnsPath(id string) string { return filepath.Join(d.cfg.ExecRoot, "netns", id) }

// userBridgeName is the Linux bridge of a user network.
func userBridgeName(id string) string { return "llbr-" + id[:10] }

// networkMode is the container's mode as stored: "default" and "" are
// the default bridge (none when the daemon runs with --bridge none).
func (d *Daemon) networkMode(m container.NetworkMode) string {
	if m == "" || m == "default" {
		if d.cfg.Bridge == "none" {
			return network.NoneNetwork
		}
		return network.DefaultBridge
	}
	return string(m)
}

// attachAtCreate resolves the create request's network mode and connects
// the container rec (already stored) to its network, allocating its
// address. rec.HostConfig.NetworkMode is normalized: the default bridge
// named, container:X by X's ID.
func (d *Daemon) attachAtCreate(rec *containers.Record, nc *nettypes.NetworkingConfig) error {
	hc := rec.HostConfig
	raw := string(hc.NetworkMode)
	mode := d.networkMode(hc.NetworkMode)
	if ref, ok := strings.CutPrefix(mode, "container:"); ok {
		x, err := d.ctrs.Get(ref)
		if err != nil {
			return fmt.Errorf("--network container:%s: %v: %w", ref, err, drivers.ErrInvalidArgument)
		}
		if x.ID == rec.ID {
			return fmt.Errorf("--network container:%s: a container cannot join its own network namespace: %w", ref, drivers.ErrInvalidArgument)
		}
		if len(hc.PortBindings) > 0 || hc.PublishAllPorts {
			return fmt.Errorf("conflicting options: port publishing and the container type network mode: %w", drivers.ErrInvalidArgument)
		}
		hc.NetworkMode = container.NetworkMode("container:" + x.ID)
		return nil
	}
	nw, err := d.nets.Get(mode)
	if err != nil {
		return fmt.Errorf("network %s not found (%v): create it with docker network create, or use bridge, host or none: %w", mode, err, drivers.ErrInvalidArgument)
	}
	hc.NetworkMode = container.NetworkMode(nw.Name)
	if err := d.checkLinks(rec, nw); err != nil {
		return err
	}
	if !nw.Addressed() {
		return nil // host and none hold no endpoint records
	}
	var es *nettypes.EndpointSettings
	if nc != nil {
		// The CLI keys it by the mode as typed ("default" without
		// --network).
		for _, k := range []string{raw, nw.Name, nw.ID, "default"} {
			if es = nc.EndpointsConfig[k]; es != nil {
				break
			}
		}
	}
	_, _, err = d.connect(nw, rec, es)
	return err
}

// connect records rec's endpoint on nw from the endpoint settings (nil:
// defaults).
func (d *Daemon) connect(nw network.Record, rec *containers.Record, es *nettypes.EndpointSettings) (network.Record, network.Endpoint, error) {
	a := network.Attach{ContainerID: rec.ID, Container: rec.Name}
	if es != nil {
		if es.IPAMConfig != nil {
			a.IP = es.IPAMConfig.IPv4Address
			if es.IPAMConfig.IPv6Address != "" {
				return nw, network.Endpoint{}, fmt.Errorf("--ip6 %s: IPv6 is not supported: %w", es.IPAMConfig.IPv6Address, drivers.ErrNotImplemented)
			}
		}
		a.Aliases = es.Aliases
	}
	if len(a.Aliases) > 0 && nw.Name == network.DefaultBridge {
		return nw, network.Endpoint{}, fmt.Errorf("network-scoped aliases are supported only for containers in user defined networks: %w", drivers.ErrInvalidArgument)
	}
	if a.IP != "" && nw.Name == network.DefaultBridge {
		return nw, network.Endpoint{}, fmt.Errorf("user specified IP address is supported on user defined networks only: %w", drivers.ErrInvalidArgument)
	}
	return d.nets.Connect(nw.ID, a)
}

// startNetwork prepares the network of the container r before its start:
// its namespace (a new one, or the one of the container it shares), a
// veth on each bridge network it is attached to, its /etc files and its
// published ports. It returns the namespace to join ("" for host) and
// the bind mounts of the files, and the environment --link adds. On
// error nothing is left.
func (d *Daemon) startNetwork(r containers.Record) (nsPath string, mounts []specs.Mount, env []string, err error) {
	mode := string(r.HostConfig.NetworkMode)
	if xid, ok := strings.CutPrefix(mode, "container:"); ok {
		x, err := d.ctrs.Get(xid)
		if err != nil {
			return "", nil, nil, fmt.Errorf("joining the network of container %s: %w", xid, err)
		}
		if x.State.Status != containers.Running || x.State.Pid == 0 {
			return "", nil, nil, fmt.Errorf("cannot join network of a non running container: %s: start it first: %w", x.Name, drivers.ErrFailedPrecondition)
		}
		return fmt.Sprintf("/proc/%d/ns/net", x.State.Pid), d.etcMounts(x.ID), nil, nil
	}
	dir := d.containerDir(r.ID)
	hostname := r.Config.Hostname
	if hostname == "" {
		hostname = r.ID[:12]
	}
	if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
		return "", nil, nil, err
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf") // none: a file without nameservers
	if mode == network.HostNetwork {
		hosts, _ := os.ReadFile("/etc/hosts")
		if err := writeFiles(dir, hosts, hostResolv); err != nil {
			return "", nil, nil, err
		}
		return "", d.etcMounts(r.ID), nil, nil
	}
	nsPath = d.netnsPath(r.ID)
	if err := network.NewNetns(nsPath); err != nil {
		return "", nil, nil, fmt.Errorf("network namespace of %s: %w", r.Name, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.stopNetwork(r.ID))
		}
	}()
	eps, err := d.nets.Of(r.ID)
	if err != nil {
		return "", nil, nil, err
	}
	var entries []network.HostEntry
	var target netip.Addr
	resolv := network.ContainerResolv(hostResolv)
	if len(eps) > 0 && embeddedDNS(eps[0].Network) {
		resolv = network.EmbeddedResolv(netip.MustParseAddr(eps[0].Network.Gateway), hostResolv)
	}
	for i, a := range eps {
		gw := i == 0 // the first network gives the default route
		if err := d.plug(r.ID, a.Network, a.Endpoint, fmt.Sprintf("eth%d", i), gw); err != nil {
			return "", nil, nil, fmt.Errorf("network %s of %s: %w", a.Network.Name, r.Name, err)
		}
		names := []string{hostname}
		entries = append(entries, network.HostEntry{IP: a.Endpoint.IP, Names: names})
		if i == 0 {
			target, _ = netip.ParseAddr(a.Endpoint.IP)
		}
	}
	linkHosts, env, err := d.linked(r)
	if err != nil {
		return "", nil, nil, err
	}
	entries = append(entries, linkHosts...)
	entries = append(entries, extraHosts(r.HostConfig.ExtraHosts)...)
	if err := writeFiles(dir, network.Hosts(entries), resolv); err != nil {
		return "", nil, nil, err
	}
	if err := d.publish(r, target); err != nil {
		return "", nil, nil, err
	}
	return nsPath, d.etcMounts(r.ID), env, nil
}

// extraHosts reads --add-host's NAME:IP entries (the CLI checked them).
func extraHosts(list []string) []network.HostEntry {
	var out []network.HostEntry
	for _, h := range list {
		if name, ip, ok := strings.Cut(h, ":"); ok {
			out = append(out, network.HostEntry{IP: ip, Names: []string{name}})
		}
	}
	return out
}

func writeFiles(dir string, hosts, resolv []byte) error {
	if err := os.WriteFile(filepath.Join(dir, "hosts"), hosts, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644)
}

// etcMounts bind-mounts the container id's managed files.
func (d *Daemon) etcMounts(id string) []specs.Mount {
	var out []specs.Mount
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		out = append(out, specs.Mount{Destination: "/etc/" + f, Type: "bind", Source: filepath.Join(d.containerDir(id), f), Options: []string{"rbind", "rprivate"}})
	}
	return out
}

// plug gives the running container id an interface named ifname on the
// network nw (a veth on its bridge, or a macvlan on its parent); with gw
// its default route goes through nw's gateway.
func (d *Daemon) plug(id string, nw network.Record, ep network.Endpoint, ifname string, gw bool) error {
	p, err := nw.Pool()
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(ep.IP)
	if err != nil {
		return fmt.Errorf("endpoint address %q: %w", ep.IP, err)
	}
	ifc := network.Iface{NetnsPath: d.netnsPath(id), IfName: ifname, Addr: netip.PrefixFrom(ip, p.Subnet.Bits()), MAC: ep.MAC}
	if gw && !nw.Internal {
		ifc.Gateway = p.Gateway
	}
	if nw.Driver == network.DriverMacvlan {
		return d.host.AttachMacvlan(network.Macvlan{Iface: ifc, Parent: nw.Options["parent"]})
	}
	if err := d.host.EnsureBridge(nw.BridgeName, netip.PrefixFrom(p.Gateway, p.Subnet.Bits())); err != nil {
		return err
	}
	// With the bridge, its rules: written again (a bridge a killed
	// daemon left, its table swept) or already there (a no-op).
	if d.nat != nil {
		if nw.Masquerades() {
			if err := d.nat.Masquerade(nw.ID, network.Masquerade{Subnet: p.Subnet, Bridge: nw.BridgeName}); err != nil {
				return fmt.Errorf("outbound NAT of network %s: %w", nw.Name, err)
			}
		}
		if err := d.nat.Isolate(nw.ID, network.Isolation{Bridge: nw.BridgeName, Internal: nw.Internal}); err != nil {
			return fmt.Errorf("isolating network %s: %w", nw.Name, err)
		}
	}
	if embeddedDNS(nw) {
		if err := d.dns.Serve(nw.ID, p.Gateway); err != nil {
			return err
		}
	}
	return d.host.Attach(network.Veth{Iface: ifc, HostName: network.VethName(id, nw.ID), Bridge: nw.BridgeName})
}

// publish starts the port proxy of r towards target, its address on its
// first bridge network; a container with none publishes nothing.
func (d *Daemon) publish(r containers.Record, target netip.Addr) error {
	bindings, err := network.ParseBindings(r.HostConfig.PortBindings, r.Config.ExposedPorts, r.HostConfig.PublishAllPorts)
	if err != nil || len(bindings) == 0 || !target.IsValid() {
		return err
	}
	proxy, pub, err := network.Publish(bindings, target, !d.cfg.NATPorts)
	if err != nil {
		return err
	}
	if d.cfg.NATPorts {
		var rules []network.DNAT
		for _, p := range pub {
			rules = append(rules, network.DNAT{Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort, Target: netip.AddrPortFrom(target, uint16(p.CtrPort))})
		}
		if err := d.nat.Set(r.ID, rules); err != nil {
			return errors.Join(err, proxy.Close())
		}
	}
	d.mu.Lock()
	d.netStates[r.ID] = &netState{proxy: proxy, published: pub}
	d.mu.Unlock()
	return nil
}

// stopNetwork undoes startNetwork once the container stopped: the proxy
// closes, its veths and namespace go. Safe to call twice.
func (d *Daemon) stopNetwork(id string) error {
	d.mu.Lock()
	st := d.netStates[id]
	delete(d.netStates, id)
	d.mu.Unlock()
	var errs []error
	if st != nil {
		errs = append(errs, st.proxy.Close())
	}
	if d.nat != nil {
		errs = append(errs, d.nat.Set(id, nil))
	}
	eps, err := d.nets.Of(id)
	errs = append(errs, err)
	for _, a := range eps {
		errs = append(errs, d.host.DeleteLink(network.VethName(id, a.Network.ID)))
	}
	errs = append(errs, network.RemoveNetns(d.netnsPath(id)))
	return errors.Join(errs...)
}

// sweepNetwork runs at start, after recover: no container runs, so every
// namespace file under the exec root and the veth of every endpoint a
// killed daemon left goes (by name: another daemon's in the same
// namespace stay).
func (d *Daemon) sweepNetwork() error {
	var errs []error
	files, _ := os.ReadDir(filepath.Join(d.cfg.ExecRoot, "netns"))
	for _, f := range files {
		errs = append(errs, network.RemoveNetns(filepath.Join(d.cfg.ExecRoot, "netns", f.Name())))
	}
	all, err := d.nets.List()
	errs = append(errs, err)
	for _, nw := range all {
		for id := range nw.Endpoints {
			errs = append(errs, d.host.DeleteLink(network.VethName(id, nw.ID)))
		}
	}
	return errors.Join(errs...)
}

// removeBridges deletes the Linux bridges of every network (and the DNS
// servers and the nftables table of DNAT and masquerade rules that go
// with them) at shutdown,
// once no container runs: a stopped daemon leaves no bridge, and the next
// one makes them again when a container needs them.
func (d *Daemon) removeBridges() error {
	all, err := d.nets.List()
	if err != nil {
		return err
	}
	errs := []error{d.dns.Close()}
	if d.nat != nil {
		errs = append(errs, d.nat.Close())
	}
	for _, nw := range all {
		if nw.BridgeName != "" {
			errs = append(errs, d.host.DeleteLink(nw.BridgeName))
		}
	}
	return errors.Join(errs...)
}

// networkSettings is inspect's NetworkSettings of r.
func (d *Daemon) networkSettings(r containers.Record) *container.NetworkSettings {
	ns := &container.NetworkSettings{Networks: map[string]*nettypes.EndpointSettings{}}
	ns.Ports = d.portMap(r)
	mode := string(r.HostConfig.NetworkMode)
	if isUp(r.State.Status) && !strings.HasPrefix(mode, "container:") && mode != network.HostNetwork {
		ns.SandboxKey = d.netnsPath(r.ID)
	}
	eps, _ := d.nets.Of(r.ID)
	for i, a := range eps {
		es := endpointSettings(a)
		ns.Networks[a.Network.Name] = es
		if i == 0 {
			ns.IPAddress, ns.Gateway, ns.IPPrefixLen, ns.MacAddress = es.IPAddress, es.Gateway, es.IPPrefixLen, es.MacAddress
			ns.EndpointID = es.EndpointID
		}
	}
	if mode == network.HostNetwork || mode == network.NoneNetwork {
		if nw, err := d.nets.Get(mode); err == nil {
			ns.Networks[mode] = &nettypes.EndpointSettings{NetworkID: nw.ID}
		}
	}
	return ns
}

func endpointSettings(a network.Attached) *nettypes.EndpointSettings {
	es := &nettypes.EndpointSettings{
		NetworkID: a.Network.ID, EndpointID: endpointID(a), Gateway: a.Network.Gateway, IPAddress: a.Endpoint.IP,
		MacAddress: a.Endpoint.MAC, Aliases: a.Endpoint.Aliases, DNSNames: []string{a.Endpoint.Container, a.Endpoint.ContainerID[:12]},
	}
	if p, err := netip.ParsePrefix(a.Network.Subnet); err == nil {
		es.IPPrefixLen = p.Bits()
	}
	if a.Endpoint.Static {
		es.IPAMConfig = &nettypes.EndpointIPAMConfig{IPv4Address: a.Endpoint.IP}
	}
	es.DNSNames = append(es.DNSNames, a.Endpoint.Aliases...)
	return es
}

// endpointID is stable for a container on a network: both IDs' halves.
func endpointID(a network.Attached) string {
	return a.Network.ID[:32] + a.Endpoint.ContainerID[:32]
}

// portMap is NetworkSettings.Ports: each exposed or published port with
// the host ports it is published on (null when it is not).
func (d *Daemon) portMap(r containers.Record) map[nat.Port][]nat.PortBinding {
	out := nat.PortMap{}
	for p := range r.Config.ExposedPorts {
		out[p] = nil
	}
	for p := range r.HostConfig.PortBindings {
		out[p] = nil
	}
	d.mu.Lock()
	st := d.netStates[r.ID]
	d.mu.Unlock()
	if st != nil {
		for _, p := range st.published {
			k := nat.Port(fmt.Sprintf("%d/%s", p.CtrPort, p.Proto))
			out[k] = append(out[k], nat.PortBinding{HostIP: p.HostIP.String(), HostPort: fmt.Sprint(p.HostPort)})
		}
	}
	return out
}

// summaryPorts is ps's Ports of r.
func (d *Daemon) summaryPorts(r containers.Record) []container.Port {
	out := []container.Port{}
	for k, bs := range d.portMap(r) {
		port, proto := k.Int(), k.Proto()
		if len(bs) == 0 {
			out = append(out, container.Port{PrivatePort: uint16(port), Type: proto})
		}
		for _, b := range bs {
			var pub int
			fmt.Sscan(b.HostPort, &pub)
			out = append(out, container.Port{IP: b.HostIP, PrivatePort: uint16(port), PublicPort: uint16(pub), Type: proto})
		}
	}
	slices.SortFunc(out, func(a, b container.Port) int { return int(a.PrivatePort) - int(b.PrivatePort) })
	return out
}

// networkEvent publishes a network's event; container is the one that
// connected or disconnected, if any.
func (d *Daemon) networkEvent(action eventtypes.Action, nw network.Record, containerID string) {
	attrs := map[string]string{"name": nw.Name, "type": nw.Driver}
	if containerID != "" {
		attrs["container"] = containerID
	}
	d.emit(eventtypes.NetworkEventType, action, nw.ID, attrs)
}
