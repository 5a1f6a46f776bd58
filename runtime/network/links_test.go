package network

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/docker/go-connections/nat"

	"github.com/layerlab/layerlab/drivers"
)

func TestParseLink(t *testing.T) {
	for in, want := range map[string][2]string{"web": {"web", "web"}, "web:db": {"web", "db"}, "/web:/client/db": {"web", "db"}} {
		if n, a, err := ParseLink(in); err != nil || n != want[0] || a != want[1] {
			t.Errorf("ParseLink(%q) = %s, %s, %v; want %v", in, n, a, err, want)
		}
	}
	for _, bad := range []string{"", ":", "web:", "we b", "web:a:b", "-x"} {
		if _, _, err := ParseLink(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseLink(%q) = %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func TestLinkEnv(t *testing.T) {
	got := LinkEnv("client", "my-db", Linked{Name: "web", IP: netip.MustParseAddr("172.29.0.2"),
		Exposed: nat.PortSet{"80/tcp": {}, "53/udp": {}}, Env: []string{"PATH=/bin", "HOME=/", "GREETING=hi=there"}})
	want := []string{
		"MY_DB_NAME=/client/my-db",
		"MY_DB_PORT=udp://172.29.0.2:53",
		"MY_DB_PORT_53_UDP=udp://172.29.0.2:53", "MY_DB_PORT_53_UDP_ADDR=172.29.0.2", "MY_DB_PORT_53_UDP_PORT=53", "MY_DB_PORT_53_UDP_PROTO=udp",
		"MY_DB_PORT_80_TCP=tcp://172.29.0.2:80", "MY_DB_PORT_80_TCP_ADDR=172.29.0.2", "MY_DB_PORT_80_TCP_PORT=80", "MY_DB_PORT_80_TCP_PROTO=tcp",
		"MY_DB_ENV_GREETING=hi=there",
	}
	if !slices.Equal(got, want) {
		t.Errorf("LinkEnv:\n%v\nwant\n%v", got, want)
	}
}

func FuzzParseLink(f *testing.F) {
	for _, s := range []string{"web", "web:db", "/web:/client/db", "::", "a/b:c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, alias, err := ParseLink(s)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("error without ErrInvalidArgument: %v", err)
			}
			return
		}
		if !linkName.MatchString(name) || !linkName.MatchString(alias) {
			t.Fatalf("ParseLink(%q) = %q, %q", s, name, alias)
		}
	})
}
