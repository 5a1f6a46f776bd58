package network

import (
	"strings"
	"testing"
)

func TestContainerResolv(t *testing.T) {
	host := "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bogus\nsearch a.example b.example\noptions ndots:2 edns0\nsortlist 1.2.3.4\n"
	got := string(ContainerResolv([]byte(host)))
	for _, want := range []string{"nameserver 10.0.0.2\n", "search a.example b.example\n", "options ndots:2 edns0\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, got)
		}
	}
	for _, bad := range []string{"127.0.0.53", "::1", "bogus", "sortlist"} {
		if strings.Contains(got, bad) {
			t.Errorf("resolv.conf keeps %q:\n%s", bad, got)
		}
	}
	if got := string(ContainerResolv(nil)); strings.Contains(got, "\nnameserver") {
		t.Errorf("no host resolv.conf gave nameservers:\n%s", got)
	}
}

func TestHosts(t *testing.T) {
	got := string(Hosts([]HostEntry{{IP: "10.0.0.5", Names: []string{"abc", "web"}}, {IP: "", Names: []string{"x"}}, {IP: "10.0.0.6"}}))
	if !strings.HasPrefix(got, "127.0.0.1\tlocalhost\n") || !strings.HasSuffix(got, "10.0.0.5\tabc web\n") {
		t.Errorf("hosts:\n%s", got)
	}
}

func FuzzParseResolv(f *testing.F) {
	f.Add([]byte("nameserver 1.2.3.4\nsearch x\noptions a b\n"))
	f.Add([]byte("nameserver\n\n#\x00 nameserver ::1 x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := ParseResolv(data)
		again := ParseResolv(ContainerResolv(data))
		for _, a := range again.Nameservers {
			if a.IsLoopback() {
				t.Fatalf("loopback nameserver %s kept", a)
			}
		}
		if len(again.Nameservers) > len(r.Nameservers) {
			t.Fatalf("nameservers grew: %v from %v", again.Nameservers, r.Nameservers)
		}
	})
}
