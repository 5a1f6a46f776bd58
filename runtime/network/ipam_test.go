package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

func TestParsePool(t *testing.T) {
	for _, c := range []struct {
		subnet, ipRange, gateway string
		want                     error
		gw, first                string
	}{
		{"10.1.0.0/24", "", "", nil, "10.1.0.1", "10.1.0.2"},
		{"10.1.0.0/24", "10.1.0.128/25", "10.1.0.254", nil, "10.1.0.254", "10.1.0.128"},
		{"10.1.0.0/30", "", "", nil, "10.1.0.1", "10.1.0.2"},
		{"10.1.0.0/31", "", "", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.1/24", "", "", drivers.ErrInvalidArgument, "", ""},
		{"fd00::/64", "", "", drivers.ErrInvalidArgument, "", ""},
		{"nonsense", "", "", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "10.2.0.0/25", "", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "10.1.0.0/16", "", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "10.1.0.1/25", "", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "", "10.1.0.255", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "", "10.1.0.0", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "", "10.9.0.1", drivers.ErrInvalidArgument, "", ""},
		{"10.1.0.0/24", "", "x", drivers.ErrInvalidArgument, "", ""},
	} {
		p, err := ParsePool(c.subnet, c.ipRange, c.gateway)
		if c.want != nil {
			if !errors.Is(err, c.want) {
				t.Errorf("ParsePool(%q, %q, %q) = %v, want %v", c.subnet, c.ipRange, c.gateway, err, c.want)
			}
			continue
		}
		if err != nil || p.Gateway.String() != c.gw {
			t.Errorf("ParsePool(%q, %q, %q) = %+v, %v; want gateway %s", c.subnet, c.ipRange, c.gateway, p, err, c.gw)
			continue
		}
		if a, err := p.Allocate(nil, ""); err != nil || a.String() != c.first {
			t.Errorf("%s: first address %s, %v; want %s", c.subnet, a, err, c.first)
		}
	}
}

func TestAllocate(t *testing.T) {
	p, err := ParsePool("10.5.0.0/29", "", "")
	if err != nil {
		t.Fatal(err)
	}
	used := map[netip.Addr]bool{}
	var got []string
	for {
		a, err := p.Allocate(used, "")
		if err != nil {
			if !errors.Is(err, drivers.ErrUnavailable) {
				t.Fatalf("exhausted pool: %v, want ErrUnavailable", err)
			}
			break
		}
		used[a] = true
		got = append(got, a.String())
	}
	// .0 network, .1 gateway, .7 broadcast never handed out.
	if want := "10.5.0.2 10.5.0.3 10.5.0.4 10.5.0.5 10.5.0.6"; strings.Join(got, " ") != want {
		t.Errorf("allocated %s, want %s", strings.Join(got, " "), want)
	}
	for want, err := range map[string]error{
		"10.5.0.3": drivers.ErrAlreadyExists, "10.5.0.1": drivers.ErrAlreadyExists, "10.5.0.7": drivers.ErrInvalidArgument,
		"10.6.0.2": drivers.ErrInvalidArgument, "junk": drivers.ErrInvalidArgument, "::1": drivers.ErrInvalidArgument,
	} {
		if _, got := p.Allocate(used, want); !errors.Is(got, err) {
			t.Errorf("Allocate(%s) = %v, want %v", want, got, err)
		}
	}
	delete(used, netip.MustParseAddr("10.5.0.4"))
	if a, err := p.Allocate(used, "10.5.0.4"); err != nil || a.String() != "10.5.0.4" {
		t.Errorf("a released address again: %s, %v", a, err)
	}
}

func FuzzParsePool(f *testing.F) {
	for _, s := range [][3]string{{"10.1.0.0/24", "", ""}, {"10.1.0.0/24", "10.1.0.128/25", "10.1.0.254"}, {"1.2.3.4/33", "x", "y"}, {"0.0.0.0/0", "", ""}} {
		f.Add(s[0], s[1], s[2], "10.1.0.7")
	}
	f.Fuzz(func(t *testing.T, subnet, ipRange, gateway, want string) {
		p, err := ParsePool(subnet, ipRange, gateway)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("error without ErrInvalidArgument: %v", err)
			}
			return
		}
		if !p.Subnet.Contains(p.Gateway) || !p.Subnet.Contains(p.Range.Addr()) {
			t.Fatalf("pool %+v escapes its subnet", p)
		}
		a, err := p.Allocate(map[netip.Addr]bool{}, want)
		if err == nil && (!p.usable(a) || a == p.Gateway) {
			t.Fatalf("allocated %s from %+v", a, p)
		}
	})
}
