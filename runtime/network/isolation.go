package network

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// Isolation keeps a bridge network's traffic to itself where the daemon's
// namespace forwards (outbound NAT turns forwarding on), as dockerd's
// isolation chains do: nothing is forwarded from one layerlab bridge to
// another, and an internal network's bridge forwards nothing in or out.
type Isolation struct {
	Bridge   string
	Internal bool
}

// Isolate adds network id's bridge to the isolation rules; the same again
// writes nothing.
func (n *NAT) Isolate(id string, i Isolation) error {
	if i.Bridge == "" || len(i.Bridge) >= unix.IFNAMSIZ {
		return fmt.Errorf("isolation of bridge %q: want an interface name of 1 to %d characters: %w", i.Bridge, unix.IFNAMSIZ-1, drivers.ErrInvalidArgument)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return update(n, n.iso, id, i, false)
}

// Unisolate removes network id's bridge from the isolation rules; none is
// not an error.
func (n *NAT) Unisolate(id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return update(n, n.iso, id, Isolation{}, true)
}

// addIsolation adds the forward filter chain and its rules to the batch
// when there are two bridges or an internal one. Filter priority, policy
// accept: only the traffic the rules name is dropped.
func (n *NAT) addIsolation(c *nftables.Conn, t *nftables.Table) {
	rules := isolationRules(slices.Collect(maps.Values(n.iso)))
	if len(rules) == 0 {
		return
	}
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r})
	}
}

// isolationRules are the drop rules for the bridges: every ordered pair of
// distinct bridges (`iifname A oifname B drop`), and for an internal one
// anything entering or leaving it through another interface.
func isolationRules(all []Isolation) [][]expr.Any {
	slices.SortFunc(all, func(a, b Isolation) int { return strings.Compare(a.Bridge, b.Bridge) })
	var out [][]expr.Any
	for _, a := range all {
		if a.Internal {
			out = append(out,
				ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, a.Bridge, expr.MetaKeyOIFNAME, expr.CmpOpNeq, a.Bridge),
				ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpNeq, a.Bridge, expr.MetaKeyOIFNAME, expr.CmpOpEq, a.Bridge))
			continue
		}
		for _, b := range all {
			if b.Bridge != a.Bridge && !b.Internal {
				out = append(out, ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, a.Bridge, expr.MetaKeyOIFNAME, expr.CmpOpEq, b.Bridge))
			}
		}
	}
	return out
}

// ifMatch is `<k1> <op1> n1 <k2> <op2> n2 drop` on interface names.
func ifMatch(k1 expr.MetaKey, op1 expr.CmpOp, n1 string, k2 expr.MetaKey, op2 expr.CmpOp, n2 string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: k1, Register: 1},
		&expr.Cmp{Op: op1, Register: 1, Data: ifname(n1)},
		&expr.Meta{Key: k2, Register: 1},
		&expr.Cmp{Op: op2, Register: 1, Data: ifname(n2)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}
