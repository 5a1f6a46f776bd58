package network

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// NATTable is the nftables table (family ip) layerlabd's DNAT,
// masquerade and bridge isolation rules live in, in the daemon's namespace; the daemon removes
// it at shutdown and a restarted one removes what a killed one left.
const NATTable = "layerlab"

// DNAT is one published port as a destination NAT rule.
type DNAT struct {
	Proto    string     // tcp or udp
	HostIP   netip.Addr // unspecified: every address
	HostPort int
	Target   netip.AddrPort // the container's address and port
}

// NAT is layerlabd's nftables table. It publishes ports by DNAT
// (dockerd's --userland-proxy=false): a prerouting chain for traffic
// arriving from other namespaces and an output chain for the daemon's
// namespace's own (not to 127/8, which a DNAT to a bridge cannot answer).
// It gives bridge networks outbound NAT: a postrouting chain masquerades
// what leaves a network's subnet through another interface than its
// bridge (masquerade.go). The table is written whole on every change, in
// one atomic batch.
type NAT struct {
	nsFd  int // the namespace's fd; -1: the caller's
	mu    sync.Mutex
	rules map[string][]DNAT     // by container ID
	masq  map[string]Masquerade // by network ID
	iso   map[string]Isolation  // by network ID (isolation.go)
	// present says the table may exist: until something was written or
	// swept, Close writes nothing (a daemon that made no rule sends no
	// batch to a namespace it does not own, e.g. a unit test's host).
	present bool
}

// NewNAT returns a NAT for the namespace of nsFd (-1: the caller's).
func NewNAT(nsFd int) *NAT {
	return &NAT{nsFd: nsFd, rules: map[string][]DNAT{}, masq: map[string]Masquerade{}, iso: map[string]Isolation{}}
}

func (n *NAT) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if n.nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(n.nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// Set replaces the rules of container id (none: removes them).
func (n *NAT) Set(id string, rules []DNAT) error {
	for _, r := range rules {
		if _, err := dnatMatch(r); err != nil {
			return err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(rules) == 0 {
		if _, ok := n.rules[id]; !ok {
			return nil
		}
		delete(n.rules, id)
	} else {
		n.rules[id] = slices.Clone(rules)
	}
	return n.write()
}

// write rewrites the table from n.rules, n.masq and n.iso; with no rule
// left the table goes.
func (n *NAT) write() error {
	empty := len(n.rules) == 0 && len(n.masq) == 0 && len(isolationRules(slices.Collect(maps.Values(n.iso)))) == 0
	if empty && !n.present {
		return nil
	}
	c, err := n.conn()
	if err != nil {
		return err
	}
	// Add then delete: deleting a table that does not exist fails the
	// batch, adding one that does is a no-op.
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable})
	c.DelTable(t)
	if !empty {
		t = c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable})
		if err := n.addDNAT(c, t); err != nil {
			return err
		}
		n.addMasquerades(c, t)
		n.addIsolation(c, t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("writing nftables table %s: %w", NATTable, err)
	}
	n.present = !empty
	return nil
}

// update sets m[id] to v (with del, removes it) and rewrites the table,
// putting back what was there if the write fails; the same value again,
// or removing what is not there, writes nothing. n.mu is held.
func update[T comparable](n *NAT, m map[string]T, id string, v T, del bool) error {
	old, had := m[id]
	if (del && !had) || (!del && had && old == v) {
		return nil
	}
	if del {
		delete(m, id)
	} else {
		m[id] = v
	}
	if err := n.write(); err != nil {
		if had {
			m[id] = old
		} else {
			delete(m, id)
		}
		return err
	}
	return nil
}

// addDNAT adds the DNAT chains and rules to the batch, if there are rules.
func (n *NAT) addDNAT(c *nftables.Conn, t *nftables.Table) error {
	if len(n.rules) == 0 {
		return nil
	}
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	for _, id := range slices.Sorted(maps.Keys(n.rules)) {
		for _, r := range n.rules[id] {
			match, err := dnatMatch(r)
			if err != nil {
				return err
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(match, dnatTo(r.Target)...)})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: append(append(notLoopback(), match...), dnatTo(r.Target)...)})
		}
	}
	return nil
}

// dnatMatch matches r's destination: its address unless unspecified, its
// protocol and port.
func dnatMatch(r DNAT) ([]expr.Any, error) {
	var proto byte
	switch r.Proto {
	case "tcp":
		proto = unix.IPPROTO_TCP
	case "udp":
		proto = unix.IPPROTO_UDP
	default:
		return nil, fmt.Errorf("DNAT of protocol %q: %w", r.Proto, errors.ErrUnsupported)
	}
	var out []expr.Any
	if r.HostIP.IsValid() && !r.HostIP.IsUnspecified() {
		out = append(out,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.HostIP.AsSlice()})
	}
	return append(out,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(r.HostPort))},
	), nil
}

// notLoopback matches a destination outside 127.0.0.0/8.
func notLoopback() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
	}
}

func dnatTo(to netip.AddrPort) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: to.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(to.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// Close removes the table and forgets every rule.
func (n *NAT) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rules = map[string][]DNAT{}
	n.masq = map[string]Masquerade{}
	n.iso = map[string]Isolation{}
	return n.write()
}

// Sweep removes the table a killed daemon left, if there is one (it only
// reads when there is none).
func (n *NAT) Sweep() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	all, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("listing nftables tables: %w", err)
	}
	if !slices.ContainsFunc(all, func(t *nftables.Table) bool { return t.Name == NATTable }) {
		return nil
	}
	n.mu.Lock()
	n.present = true
	n.mu.Unlock()
	return n.Close()
}
