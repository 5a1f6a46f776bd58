package daemon

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/network"
)

// embeddedDNS says nw has the embedded DNS server: user bridges, as in
// dockerd (the default bridge has none).
func embeddedDNS(nw network.Record) bool {
	return nw.Driver == network.DriverBridge && nw.Name != network.DefaultBridge
}

// dnsLookup answers the embedded DNS server of network netID: the
// addresses of the running containers named name (container name, short
// ID or --network-alias) on the user networks the asking container is
// on, or on netID when the client is not known there.
func (d *Daemon) dnsLookup(netID string, client netip.Addr, name string) []netip.Addr {
	all, err := d.nets.List()
	if err != nil {
		return nil
	}
	asker := ""
	for _, nw := range all {
		if nw.ID != netID {
			continue
		}
		for id, ep := range nw.Endpoints {
			if ep.IP == client.String() {
				asker = id
			}
		}
	}
	var out []netip.Addr
	for _, nw := range all {
		if !embeddedDNS(nw) {
			continue
		}
		if _, on := nw.Endpoints[asker]; nw.ID != netID && !on {
			continue
		}
		for id, ep := range nw.Endpoints {
			if !nameMatches(name, ep) {
				continue
			}
			r, err := d.ctrs.Get(id)
			if err != nil || r.State.Status != containers.Running {
				continue
			}
			if ip, err := netip.ParseAddr(ep.IP); err == nil && !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

func nameMatches(name string, ep network.Endpoint) bool {
	if name == strings.ToLower(ep.Container) || name == ep.ContainerID[:12] {
		return true
	}
	return slices.ContainsFunc(ep.Aliases, func(a string) bool { return strings.ToLower(a) == name })
}
