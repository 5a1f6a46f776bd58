package network

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/docker/go-connections/nat"

	"github.com/layerlab/layerlab/drivers"
)

func TestParseBindings(t *testing.T) {
	got, err := ParseBindings(nat.PortMap{
		"80/tcp": {{HostIP: "127.0.0.1", HostPort: "8080"}, {HostPort: "8000-8010"}},
		"53/udp": {{}},
	}, nat.PortSet{"80/tcp": {}, "7000/tcp": {}, "9000/udp": {}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := []Binding{
		{Proto: "udp", CtrPort: 53, HostIP: netip.IPv4Unspecified()},
		{Proto: "tcp", CtrPort: 80, HostIP: netip.MustParseAddr("127.0.0.1"), Port: 8080, Last: 8080},
		{Proto: "tcp", CtrPort: 80, HostIP: netip.IPv4Unspecified(), Port: 8000, Last: 8010},
		{Proto: "tcp", CtrPort: 7000, HostIP: netip.IPv4Unspecified(), FromPublishAll: true},
		{Proto: "udp", CtrPort: 9000, HostIP: netip.IPv4Unspecified(), FromPublishAll: true},
	}
	if len(got) != len(want) {
		t.Fatalf("bindings %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("binding %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, pm := range []nat.PortMap{
		{"80/sctp": {{}}}, {"0/tcp": {{}}}, {"x/tcp": {{}}}, {"80-90/tcp": {{}}}, {"80/tcp": {{HostPort: "70000"}}},
		{"80/tcp": {{HostPort: "9-1"}}}, {"80/tcp": {{HostIP: "::1"}}}, {"80/tcp": {{HostIP: "host"}}}, {"80/tcp": {{HostPort: " 80"}}},
	} {
		if _, err := ParseBindings(pm, nil, false); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseBindings(%v) = %v, want ErrInvalidArgument", pm, err)
		}
	}
}

// TestProxy forwards TCP and UDP between loopback addresses, picks a free
// port for port 0, refuses a port in use, and closes everything.
func TestProxy(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tcpSrv, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpSrv.Close()
	go func() {
		for {
			c, err := tcpSrv.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); b, _ := io.ReadAll(c); _, _ = c.Write([]byte(strings.ToUpper(string(b)))) }()
		}
	}()
	udpSrv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udpSrv.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := udpSrv.ReadFromUDP(buf)
			if err != nil {
				return
			}
			_, _ = udpSrv.WriteToUDP([]byte("re:"+string(buf[:n])), from)
		}
	}()
	tcpPort, udpPort := tcpSrv.Addr().(*net.TCPAddr).Port, udpSrv.LocalAddr().(*net.UDPAddr).Port
	p, pub, err := Publish([]Binding{{Proto: "tcp", CtrPort: tcpPort, HostIP: lo}, {Proto: "udp", CtrPort: udpPort, HostIP: lo}}, lo, true)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(pub) != 2 || pub[0].HostPort == 0 || pub[1].HostPort == 0 {
		t.Fatalf("published %+v", pub)
	}
	c, err := net.Dial("tcp4", netip.AddrPortFrom(lo, uint16(pub[0].HostPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("hello"))
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "HELLO" {
		t.Errorf("through the TCP proxy: %q, %v", b, err)
	}
	c.Close()
	u, err := net.Dial("udp4", netip.AddrPortFrom(lo, uint16(pub[1].HostPort)).String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, _ = u.Write([]byte("ping"))
	_ = u.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if n, err := u.Read(buf); err != nil || string(buf[:n]) != "re:ping" {
		t.Errorf("through the UDP proxy: %q, %v", buf[:n], err)
	}
	// The same host port again is refused.
	if _, _, err := Publish([]Binding{{Proto: "tcp", CtrPort: 1, HostIP: lo, Port: pub[0].HostPort, Last: pub[0].HostPort}}, lo, false); !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Errorf("publishing a port in use: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp4", netip.AddrPortFrom(lo, uint16(pub[0].HostPort)).String()); err == nil {
		c.Close()
		t.Errorf("the proxy still listens after Close")
	}
}

func FuzzParseBindings(f *testing.F) {
	f.Add("80/tcp", "127.0.0.1", "8080", "7000/udp")
	f.Add("80", "", "8000-8010", "x")
	f.Add("1-2/tcp", "::1", "-", "/")
	f.Fuzz(func(t *testing.T, port, hostIP, hostPort, exposed string) {
		got, err := ParseBindings(nat.PortMap{nat.Port(port): {{HostIP: hostIP, HostPort: hostPort}}}, nat.PortSet{nat.Port(exposed): {}}, true)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("error without ErrInvalidArgument: %v", err)
			}
			return
		}
		for _, b := range got {
			if b.CtrPort < 1 || b.CtrPort > 65535 || b.Port < 0 || b.Last > 65535 || (b.Proto != "tcp" && b.Proto != "udp") || !b.HostIP.Is4() {
				t.Fatalf("bad binding %+v", b)
			}
		}
	})
}
