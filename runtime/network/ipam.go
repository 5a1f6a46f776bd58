package network

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/layerlab/layerlab/drivers"
)

// Pool is a network's address plan: the subnet, the part of it addresses
// are handed out from (the whole subnet unless --ip-range narrows it) and
// the gateway, which the bridge holds.
type Pool struct {
	Subnet  netip.Prefix
	Range   netip.Prefix
	Gateway netip.Addr
}

// ParsePool reads a create request's IPAM config as dockerd's bridge
// driver takes it: an IPv4 subnet of at most /30, an optional ip-range
// inside it and an optional gateway inside it (default: the subnet's first
// host address). Any string may come from a raw API request.
func ParsePool(subnet, ipRange, gateway string) (Pool, error) {
	var p Pool
	sub, err := netip.ParsePrefix(subnet)
	if err != nil {
		return p, fmt.Errorf("invalid subnet %q: want an IPv4 CIDR such as 172.30.5.0/24: %w", subnet, drivers.ErrInvalidArgument)
	}
	if !sub.Addr().Is4() || sub.Bits() > 30 {
		return p, fmt.Errorf("subnet %s: want an IPv4 subnet of at most /30 (IPv6 networks are not supported): %w", subnet, drivers.ErrInvalidArgument)
	}
	if sub.Masked() != sub {
		return p, fmt.Errorf("subnet %s has host bits set: did you mean %s?: %w", subnet, sub.Masked(), drivers.ErrInvalidArgument)
	}
	p.Subnet, p.Range = sub, sub
	if ipRange != "" {
		r, err := netip.ParsePrefix(ipRange)
		if err != nil || !r.Addr().Is4() || r.Masked() != r {
			return p, fmt.Errorf("invalid ip-range %q: want an IPv4 CIDR without host bits inside the subnet %s: %w", ipRange, sub, drivers.ErrInvalidArgument)
		}
		if r.Bits() < sub.Bits() || !sub.Contains(r.Addr()) {
			return p, fmt.Errorf("ip-range %s is not inside the subnet %s: %w", r, sub, drivers.ErrInvalidArgument)
		}
		p.Range = r
	}
	if gateway == "" {
		p.Gateway = sub.Addr().Next()
	} else if p.Gateway, err = netip.ParseAddr(gateway); err != nil || !p.Gateway.Is4() {
		return p, fmt.Errorf("invalid gateway %q: want an IPv4 address inside the subnet %s: %w", gateway, sub, drivers.ErrInvalidArgument)
	}
	if !p.usable(p.Gateway) {
		return p, fmt.Errorf("gateway %s is not a host address of the subnet %s: %w", p.Gateway, sub, drivers.ErrInvalidArgument)
	}
	return p, nil
}

// usable says a is a host address of the subnet: inside it, neither its
// network nor its broadcast address.
func (p Pool) usable(a netip.Addr) bool {
	return p.Subnet.Contains(a) && a != p.Subnet.Addr() && a != broadcast(p.Subnet)
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	mask := net.CIDRMask(p.Bits(), 32)
	for i := range b {
		b[i] |= ^mask[i]
	}
	return netip.AddrFrom4(b)
}

// Allocate picks an address: want when given (it must be a free host
// address of the subnet; the range only bounds automatic picks, as in
// dockerd), else the first free one of the range. used holds the
// addresses taken, the gateway is never handed out.
func (p Pool) Allocate(used map[netip.Addr]bool, want string) (netip.Addr, error) {
	if want != "" {
		a, err := netip.ParseAddr(want)
		switch {
		case err != nil || !a.Is4():
			return a, fmt.Errorf("invalid IPv4 address %q: %w", want, drivers.ErrInvalidArgument)
		case !p.usable(a):
			return a, fmt.Errorf("address %s is not a host address of the subnet %s: %w", a, p.Subnet, drivers.ErrInvalidArgument)
		case a == p.Gateway:
			return a, fmt.Errorf("address %s is the network's gateway: %w", a, drivers.ErrAlreadyExists)
		case used[a]:
			return a, fmt.Errorf("address %s is already in use on the network: pick another with --ip: %w", a, drivers.ErrAlreadyExists)
		}
		return a, nil
	}
	for a := p.Range.Addr(); p.Range.Contains(a); a = a.Next() {
		if p.usable(a) && a != p.Gateway && !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in %s: remove containers from the network or create one with a larger --subnet/--ip-range: %w", p.Range, drivers.ErrUnavailable)
}
