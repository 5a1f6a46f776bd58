package network

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/nftables"

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
