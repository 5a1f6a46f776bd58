package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
)

// TestNAT writes DNAT rules in a namespace the test made: the table with
// both chains and a rule per port in each, replaced per container, gone
// once no container has rules and at Close.
func TestNAT(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "nftables needs root")
	}
	path := nsForTest(t, t.TempDir(), "nat")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // before the namespace's removal: an open file keeps it busy
	n := NewNAT(int(f.Fd()))
	count := func() (tables int, rules map[string]int) {
		t.Helper()
		c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
		if err != nil {
			t.Fatal(err)
		}
		all, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		rules = map[string]int{}
		for _, tb := range all {
			if tb.Name != NATTable {
				continue
			}
			tables++
			chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
			if err != nil {
				t.Fatal(err)
			}
			for _, ch := range chains {
				rs, err := c.GetRules(tb, ch)
				if err != nil {
					t.Fatal(err)
				}
				rules[ch.Name] += len(rs)
			}
		}
		return tables, rules
	}
	web := []DNAT{
		{Proto: "tcp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, Target: netip.MustParseAddrPort("172.29.0.2:80")},
		{Proto: "udp", HostIP: netip.IPv4Unspecified(), HostPort: 5353, Target: netip.MustParseAddrPort("172.29.0.2:53")},
	}
	if err := n.Set("web", web); err != nil {
		t.Fatal(err)
	}
	if err := n.Set("db", web[:1]); err != nil {
		t.Fatal(err)
	}
	if tables, rules := count(); tables != 1 || rules["prerouting"] != 3 || rules["output"] != 3 {
		t.Errorf("after two containers: %d tables, rules %v; want 1 table with 3 rules per chain", tables, rules)
	}
	if err := n.Set("web", nil); err != nil {
		t.Fatal(err)
	}
	if _, rules := count(); rules["prerouting"] != 1 {
		t.Errorf("after web's removal: rules %v", rules)
	}
	if err := n.Set("db", nil); err != nil {
		t.Fatal(err)
	}
	if tables, _ := count(); tables != 0 {
		t.Errorf("%d layerlab tables left without rules", tables)
	}
	if err := n.Set("gone", nil); err != nil {
		t.Fatal(err)
	}
	if err := n.Set("x", []DNAT{{Proto: "sctp", HostPort: 1, Target: netip.MustParseAddrPort("10.0.0.1:1")}}); err == nil {
		t.Errorf("an sctp rule was written")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if tables, _ := count(); tables != 0 {
		t.Errorf("%d layerlab tables left after Close", tables)
	}
}

// TestMasqueradeExprs: the rule is dockerd's, `ip saddr SUBNET oifname
// != BRIDGE masquerade`, the subnet masked and the name NUL-padded as the
// kernel compares it; what the kernel could not take is refused first.
func TestMasqueradeExprs(t *testing.T) {
	got := masqueradeExprs(Masquerade{Subnet: netip.MustParsePrefix("10.77.0.5/24"), Bridge: "llbr-abc"})
	want := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 77, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: append([]byte("llbr-abc"), make([]byte, 8)...)},
		&expr.Masq{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("masquerade rule:\n%s\nwant\n%s", dump(got), dump(want))
	}
	n := NewNAT(-1) // refused before any netlink call
	for _, m := range []Masquerade{
		{Subnet: netip.MustParsePrefix("fd00::/64"), Bridge: "br"},
		{Bridge: "br"},
		{Subnet: netip.MustParsePrefix("10.0.0.0/24")},
		{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Bridge: "sixteen-chars-xx"},
	} {
		if err := n.Masquerade("x", m); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("Masquerade(%+v): %v, want ErrInvalidArgument", m, err)
		}
	}
}

func dump(exprs []expr.Any) string {
	var b strings.Builder
	for _, e := range exprs {
		fmt.Fprintf(&b, "  %T %+v\n", e, e)
	}
	return b.String()
}

// TestMasquerade writes outbound NAT in a namespace the test made: IPv4
// forwarding turned on there, a postrouting rule per network that the
// kernel gives back as written, asking again writes no second rule, DNAT
// rules beside them, the table kept while a network masquerades and gone
// after the last, and a killed daemon's table swept by the next one's NAT.
func TestMasquerade(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "nftables needs root")
	}
	path := nsForTest(t, t.TempDir(), "masq")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	if got := readInNetns(t, fd, ipForward); got != "0" {
		t.Fatalf("ip_forward of a new namespace: %q, want 0", got)
	}
	n := NewNAT(fd)
	def := Masquerade{Subnet: netip.MustParsePrefix("172.29.0.0/16"), Bridge: "layerlab0"}
	user := Masquerade{Subnet: netip.MustParsePrefix("172.30.0.0/24"), Bridge: "llbr-0123456789"}
	for _, step := range []struct {
		id string
		m  Masquerade
	}{{"def", def}, {"user", user}, {"def", def}} {
		if err := n.Masquerade(step.id, step.m); err != nil {
			t.Fatal(err)
		}
	}
	if got := readInNetns(t, fd, ipForward); got != "1" {
		t.Errorf("ip_forward after a masquerade: %q, want 1", got)
	}
	rules := postrouting(t, fd)
	if len(rules) != 2 {
		t.Fatalf("%d postrouting rules for two networks (one asked twice), want 2", len(rules))
	}
	for i, m := range []Masquerade{def, user} {
		if want := masqueradeExprs(m); !reflect.DeepEqual(rules[i].Exprs, want) {
			t.Errorf("rule %d as the kernel gives it back:\n%s\nwant\n%s", i, dump(rules[i].Exprs), dump(want))
		}
	}
	if err := n.Set("web", []DNAT{{Proto: "tcp", HostPort: 8080, Target: netip.MustParseAddrPort("172.29.0.2:80")}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Set("web", nil); err != nil {
		t.Fatal(err)
	}
	if got := len(postrouting(t, fd)); got != 2 {
		t.Errorf("%d postrouting rules after a DNAT came and went, want 2", got)
	}
	if err := n.Unmasquerade("user"); err != nil {
		t.Fatal(err)
	}
	if err := n.Unmasquerade("user"); err != nil {
		t.Fatal(err)
	}
	if got := len(postrouting(t, fd)); got != 1 {
		t.Errorf("%d postrouting rules after one network went, want 1", got)
	}
	// Another NAT that made nothing (a unit test's daemon in a namespace
	// it does not own) leaves the table alone at Close.
	if err := NewNAT(fd).Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(postrouting(t, fd)); got != 1 {
		t.Errorf("a NAT that wrote nothing changed the table at Close: %d rules", got)
	}
	// n's daemon is killed: the next one sweeps its table.
	if err := NewNAT(fd).Sweep(); err != nil {
		t.Fatal(err)
	}
	if tables := natTables(t, fd); tables != 0 {
		t.Errorf("%d layerlab tables after a sweep", tables)
	}
	if got := readInNetns(t, fd, ipForward); got != "1" {
		t.Errorf("ip_forward after the sweep: %q, want 1 (as dockerd, never turned off)", got)
	}
	n2 := NewNAT(fd)
	if err := n2.Masquerade("def", def); err != nil {
		t.Fatal(err)
	}
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	if tables := natTables(t, fd); tables != 0 {
		t.Errorf("%d layerlab tables after Close", tables)
	}
}

// postrouting returns the rules of the layerlab table's postrouting chain
// in the namespace of fd.
func postrouting(t *testing.T, fd int) []*nftables.Rule {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable}, &nftables.Chain{Name: "postrouting"})
	if err != nil {
		t.Fatalf("postrouting chain: %v", err)
	}
	return rules
}

func natTables(t *testing.T, fd int) int {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	all, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	return len(slices.DeleteFunc(all, func(tb *nftables.Table) bool { return tb.Name != NATTable }))
}

// readInNetns reads a /proc/sys file of the namespace of fd from a thread
// moved there (the thread is not put back: it ends with its goroutine).
func readInNetns(t *testing.T, fd int, path string) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		b, err := os.ReadFile(path)
		ch <- result{strings.TrimSpace(string(b)), err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.s
}
