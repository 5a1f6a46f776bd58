package network

import (
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// TestResolver answers a network's names in round robin over UDP and
// TCP, an empty AAAA for them, forwards other names upstream (here
// another resolver on loopback), says NXDOMAIN without an upstream, and
// stops.
func TestResolver(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	three := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.4")}
	var mu sync.Mutex
	var asked []string
	lookup := func(netID string, client netip.Addr, name string) []netip.Addr {
		mu.Lock()
		asked = append(asked, netID+" "+client.String()+" "+name)
		mu.Unlock()
		switch name {
		case "as1":
			return slices.Clone(three)
		case "far.example":
			if netID == "up" {
				return []netip.Addr{netip.MustParseAddr("192.0.2.9")}
			}
		}
		return nil
	}
	up := NewResolver(lookup, nil)
	up.port = 0
	if err := up.Serve("up", lo); err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	r := NewResolver(lookup, []byte("nameserver 127.0.0.1\n"))
	if len(r.upstream) != 0 {
		t.Errorf("a loopback upstream was kept: %v", r.upstream)
	}
	r.port = 0
	r.upstream = []string{up.servers["up"][0].PacketConn.LocalAddr().String()}
	if err := r.Serve("n1", lo); err != nil {
		t.Fatal(err)
	}
	if err := r.Serve("n1", lo); err != nil { // running: nothing to do
		t.Fatal(err)
	}
	udp, tcp := r.servers["n1"][0].PacketConn.LocalAddr().String(), r.servers["n1"][1].Listener.Addr().String()
	ask := func(net, at, name string, qtype uint16) *dns.Msg {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), qtype)
		resp, _, err := (&dns.Client{Net: net}).Exchange(q, at)
		if err != nil {
			t.Fatalf("%s %s: %v", net, name, err)
		}
		return resp
	}
	firsts := map[string]bool{}
	for range 30 {
		resp := ask("udp", udp, "AS1", dns.TypeA)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 3 {
			t.Fatalf("A as1: %v", resp)
		}
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) < 2 {
		t.Errorf("30 answers all began with %v: no round robin", firsts)
	}
	if resp := ask("tcp", tcp, "as1", dns.TypeA); len(resp.Answer) != 3 {
		t.Errorf("A as1 over TCP: %v", resp)
	}
	if resp := ask("udp", udp, "as1", dns.TypeAAAA); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("AAAA as1: %v", resp)
	}
	if resp := ask("udp", udp, "far.example", dns.TypeA); len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.9" {
		t.Errorf("far.example through the upstream: %v", resp)
	}
	if resp := ask("udp", up.servers["up"][0].PacketConn.LocalAddr().String(), "nosuch", dns.TypeA); resp.Rcode != dns.RcodeNameError {
		t.Errorf("nosuch without an upstream: %v, want NXDOMAIN", resp)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(asked, "n1 127.0.0.1 as1") {
		t.Errorf("lookups %v lack the client's address", asked)
	}
	if err := r.Stop("n1"); err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("as1.", dns.TypeA)
	if _, _, err := (&dns.Client{Net: "tcp"}).Exchange(q, tcp); err == nil {
		t.Errorf("the server still answers after Stop")
	}
}
