package network

import (
	"os"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestIsolationRules: a drop rule for each ordered pair of bridges, and
// for an internal bridge anything in or out; one bridge needs none.
func TestIsolationRules(t *testing.T) {
	a, b, in := Isolation{Bridge: "layerlab0"}, Isolation{Bridge: "llbr-b"}, Isolation{Bridge: "llbr-i", Internal: true}
	if got := isolationRules([]Isolation{a}); len(got) != 0 {
		t.Errorf("one bridge: %d rules, want none", len(got))
	}
	got := isolationRules([]Isolation{in, b, a})
	want := [][]expr.Any{
		ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, "layerlab0", expr.MetaKeyOIFNAME, expr.CmpOpEq, "llbr-b"),
		ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, "llbr-b", expr.MetaKeyOIFNAME, expr.CmpOpEq, "layerlab0"),
		ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpEq, "llbr-i", expr.MetaKeyOIFNAME, expr.CmpOpNeq, "llbr-i"),
		ifMatch(expr.MetaKeyIIFNAME, expr.CmpOpNeq, "llbr-i", expr.MetaKeyOIFNAME, expr.CmpOpEq, "llbr-i"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n%v\nwant\n%v", got, want)
	}
	if err := NewNAT(-1).Isolate("x", Isolation{Bridge: "a-name-longer-than-15"}); err == nil {
		t.Error("a bridge name too long for an interface was accepted")
	}
}

// TestIsolation writes the isolation rules in a namespace the test made:
// the kernel gives them back as written, and they go with the networks.
func TestIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "nftables needs root")
	}
	path := nsForTest(t, t.TempDir(), "iso")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	n := NewNAT(fd)
	for id, i := range map[string]Isolation{"a": {Bridge: "layerlab0"}, "b": {Bridge: "llbr-b"}, "i": {Bridge: "llbr-i", Internal: true}} {
		if err := n.Isolate(id, i); err != nil {
			t.Fatal(err)
		}
	}
	rules := forwardRules(t, fd)
	want := isolationRules([]Isolation{{Bridge: "layerlab0"}, {Bridge: "llbr-b"}, {Bridge: "llbr-i", Internal: true}})
	if len(rules) != len(want) {
		t.Fatalf("%d forward rules, want %d", len(rules), len(want))
	}
	for i := range rules {
		if !reflect.DeepEqual(rules[i].Exprs, want[i]) {
			t.Errorf("rule %d as the kernel gives it back:\n%s\nwant\n%s", i, dump(rules[i].Exprs), dump(want[i]))
		}
	}
	for _, id := range []string{"i", "b"} {
		if err := n.Unisolate(id); err != nil {
			t.Fatal(err)
		}
	}
	if tables := natTables(t, fd); tables != 0 {
		t.Errorf("%d layerlab tables with one bridge left (no rule needed)", tables)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

// forwardRules returns the rules of the layerlab table's forward chain in
// the namespace of fd.
func forwardRules(t *testing.T, fd int) []*nftables.Rule {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: NATTable}, &nftables.Chain{Name: "forward"})
	if err != nil {
		t.Fatal(err)
	}
	return rules
}
