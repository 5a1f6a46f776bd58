package network

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Masquerade is a bridge network's outbound NAT, dockerd's
// `-s SUBNET ! -o BRIDGE -j MASQUERADE`: what leaves the subnet through
// any interface but the bridge takes that interface's address.
type Masquerade struct {
	Subnet netip.Prefix
	Bridge string
}

// ipForward is IPv4 forwarding's switch, for the namespace of the thread
// that opens it.
const ipForward = "/proc/sys/net/ipv4/ip_forward"

func (m Masquerade) check() error {
	if !m.Subnet.IsValid() || !m.Subnet.Addr().Is4() {
		return fmt.Errorf("masquerade of subnet %s: want an IPv4 subnet: %w", m.Subnet, drivers.ErrInvalidArgument)
	}
	if m.Bridge == "" || len(m.Bridge) >= unix.IFNAMSIZ {
		return fmt.Errorf("masquerade through bridge %q: want an interface name of 1 to %d characters: %w", m.Bridge, unix.IFNAMSIZ-1, drivers.ErrInvalidArgument)
	}
	return nil
}

// Masquerade gives network id outbound NAT, first turning IPv4
// forwarding on in the namespace (as dockerd, never off again: other
// networks or the host may rely on it). The same rule again writes
// nothing, so a caller may ask on every container start.
func (n *NAT) Masquerade(id string, m Masquerade) error {
	if err := m.check(); err != nil {
		return err
	}
	m.Subnet = m.Subnet.Masked()
	n.mu.Lock()
	defer n.mu.Unlock()
	if old, had := n.masq[id]; had && old == m {
		return nil
	}
	if err := n.enableForwarding(); err != nil {
		return err
	}
	return update(n, n.masq, id, m, false)
}

// Unmasquerade removes network id's outbound NAT; none is not an error.
func (n *NAT) Unmasquerade(id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return update(n, n.masq, id, Masquerade{}, true)
}

// addMasquerades adds the postrouting chain and a rule per network to
// the batch, if any network masquerades. Source NAT priority: after
// routing chose the interface the rule tests.
func (n *NAT) addMasquerades(c *nftables.Conn, t *nftables.Table) {
	if len(n.masq) == 0 {
		return
	}
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, id := range slices.Sorted(maps.Keys(n.masq)) {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: masqueradeExprs(n.masq[id])})
	}
}

// masqueradeExprs is `ip saddr SUBNET oifname != BRIDGE masquerade`.
func masqueradeExprs(m Masquerade) []expr.Any {
	p := m.Subnet.Masked()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(m.Bridge)},
		&expr.Masq{},
	}
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// enableForwarding turns IPv4 forwarding on in n's namespace. /proc/sys/net
// answers for the namespace of the thread that opens it, so for another
// namespace the write is made from a thread moved there.
func (n *NAT) enableForwarding() error {
	if n.nsFd < 0 {
		return writeForward()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, moved to the other namespace,
		// ends with this goroutine instead of serving others.
		runtime.LockOSThread()
		if err := unix.Setns(n.nsFd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering the network namespace to turn forwarding on: %w", err)
			return
		}
		errc <- writeForward()
	}()
	return <-errc
}

func writeForward() error {
	if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("turning IPv4 forwarding on (%s): %w: %w", ipForward, err, drivers.ErrUnavailable)
	}
	return nil
}
