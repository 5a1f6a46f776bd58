package network

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/go-connections/nat"

	"github.com/layerlab/layerlab/drivers"
)

// Binding is one published port: a host address and port (0: any free
// one; Last > Port: the first free one of Port..Last) forwarded to the
// container's port.
type Binding struct {
	Proto          string // tcp or udp
	CtrPort        int
	HostIP         netip.Addr // unspecified: every address
	Port, Last     int
	FromPublishAll bool
}

// ParseBindings checks a create request's PortBindings (which a raw API
// request may fill with anything) and, with publishAll (-P), adds a
// binding to a free port for each exposed port that has none.
func ParseBindings(pm nat.PortMap, exposed nat.PortSet, publishAll bool) ([]Binding, error) {
	var out []Binding
	keys := make([]string, 0, len(pm))
	for k := range pm {
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	for _, k := range keys {
		proto, port, err := parseCtrPort(k)
		if err != nil {
			return nil, err
		}
		for _, pb := range pm[nat.Port(k)] {
			b := Binding{Proto: proto, CtrPort: port, HostIP: netip.IPv4Unspecified()}
			if pb.HostIP != "" {
				ip, err := netip.ParseAddr(pb.HostIP)
				if err != nil || !ip.Is4() {
					return nil, fmt.Errorf("port %s: host IP %q: want an IPv4 address such as 127.0.0.1 or 0.0.0.0: %w", k, pb.HostIP, drivers.ErrInvalidArgument)
				}
				b.HostIP = ip
			}
			if b.Port, b.Last, err = parseHostPorts(pb.HostPort); err != nil {
				return nil, fmt.Errorf("port %s: %w", k, err)
			}
			out = append(out, b)
		}
	}
	if publishAll {
		keys = keys[:0]
		for k := range exposed {
			keys = append(keys, string(k))
		}
		slices.Sort(keys)
		for _, k := range keys {
			if _, ok := pm[nat.Port(k)]; ok {
				continue
			}
			proto, port, err := parseCtrPort(k)
			if err != nil {
				return nil, err
			}
			out = append(out, Binding{Proto: proto, CtrPort: port, HostIP: netip.IPv4Unspecified(), FromPublishAll: true})
		}
	}
	return out, nil
}

// parseCtrPort reads "80/tcp" (no protocol: tcp).
func parseCtrPort(k string) (string, int, error) {
	p, proto, _ := strings.Cut(k, "/")
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return "", 0, fmt.Errorf("port %q: protocol %q is not supported (tcp and udp are): %w", k, proto, drivers.ErrInvalidArgument)
	}
	n, err := portNumber(p)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", k, err)
	}
	return proto, n, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 || strings.TrimSpace(s) != s {
		return 0, fmt.Errorf("invalid port %q: want a number from 1 to 65535: %w", s, drivers.ErrInvalidArgument)
	}
	return n, nil
}

// parseHostPorts reads a HostPort: "" (any free port), "8080" or a range
// "8000-8010".
func parseHostPorts(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	first, err := portNumber(lo)
	if err != nil {
		return 0, 0, err
	}
	last := first
	if isRange {
		if last, err = portNumber(hi); err != nil {
			return 0, 0, err
		}
		if last < first {
			return 0, 0, fmt.Errorf("invalid host port range %q: the end comes before the start: %w", s, drivers.ErrInvalidArgument)
		}
	}
	return first, last, nil
}

// Published is a binding made: the host port the proxy listens on.
type Published struct {
	Proto    string
	CtrPort  int
	HostIP   netip.Addr
	HostPort int
}

// Proxy forwards published ports to a container: the userland proxy, a
// goroutine per listener and per connection, so connections from the
// host's own addresses (loopback included) reach the container too.
type Proxy struct {
	mu      sync.Mutex
	closers []io.Closer
	wg      sync.WaitGroup
	closed  bool
	// reserveOnly holds the ports without serving them.
	reserveOnly bool
}

// Publish listens for each binding and forwards to target. Without
// forward the listeners only hold the ports (nftables DNAT moves the
// traffic before it reaches them). On error nothing stays open.
func Publish(bindings []Binding, target netip.Addr, forward bool) (*Proxy, []Published, error) {
	p := &Proxy{reserveOnly: !forward}
	var out []Published
	for _, b := range bindings {
		pub, err := p.listen(b, target)
		if err != nil {
			return nil, nil, errors.Join(err, p.Close())
		}
		out = append(out, pub)
	}
	return p, out, nil
}

func (p *Proxy) listen(b Binding, target netip.Addr) (Published, error) {
	to := netip.AddrPortFrom(target, uint16(b.CtrPort)).String()
	last := b.Last
	if last < b.Port {
		last = b.Port
	}
	var err error
	for port := b.Port; port <= last; port++ {
		addr := netip.AddrPortFrom(b.HostIP, uint16(port)).String()
		pub := Published{Proto: b.Proto, CtrPort: b.CtrPort, HostIP: b.HostIP}
		if b.Proto == "udp" {
			var c *net.UDPConn
			if c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr))); err == nil {
				pub.HostPort = c.LocalAddr().(*net.UDPAddr).Port
				p.add(c)
				if !p.reserveOnly {
					p.wg.Go(func() { p.serveUDP(c, to) })
				}
				return pub, nil
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", addr); err == nil {
				pub.HostPort = l.Addr().(*net.TCPAddr).Port
				p.add(l)
				if !p.reserveOnly {
					p.wg.Go(func() { p.serveTCP(l, to) })
				}
				return pub, nil
			}
		}
	}
	return Published{}, fmt.Errorf("publishing %s port %d on %s:%s: %w: pick another host port: %w", b.Proto, b.CtrPort, b.HostIP, portText(b), err, drivers.ErrAlreadyExists)
}

func portText(b Binding) string {
	if b.Last > b.Port {
		return fmt.Sprintf("%d-%d", b.Port, b.Last)
	}
	return strconv.Itoa(b.Port)
}

// add keeps c to close with the proxy; a closed proxy closes it at once.
func (p *Proxy) add(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	p.closers = append(p.closers, c)
}

// remove forgets a connection that ended by itself.
func (p *Proxy) remove(c io.Closer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closers = slices.DeleteFunc(p.closers, func(x io.Closer) bool { return x == c })
}

func (p *Proxy) serveTCP(l net.Listener, to string) {
	for {
		in, err := l.Accept()
		if err != nil {
			return // closed
		}
		p.add(in)
		p.wg.Go(func() {
			defer p.remove(in)
			defer in.Close()
			out, err := net.DialTimeout("tcp4", to, 10*time.Second)
			if err != nil {
				return
			}
			p.add(out)
			defer p.remove(out)
			defer out.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(out, in)
				_ = out.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(in, out)
			_ = in.(*net.TCPConn).CloseWrite()
			<-done
		})
	}
}

// udpIdle ends a UDP flow that carried nothing for this long.
const udpIdle = 90 * time.Second

func (p *Proxy) serveUDP(c *net.UDPConn, to string) {
	var mu sync.Mutex
	flows := map[string]*net.UDPConn{}
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		mu.Lock()
		up, ok := flows[from.String()]
		if !ok {
			if up, err = dialUDP(to); err != nil {
				mu.Unlock()
				continue
			}
			flows[from.String()] = up
			p.add(up)
			p.wg.Go(func() {
				defer p.remove(up)
				defer up.Close()
				back := make([]byte, 65535)
				for {
					_ = up.SetReadDeadline(time.Now().Add(udpIdle))
					m, err := up.Read(back)
					if err != nil {
						break
					}
					if _, err := c.WriteToUDP(back[:m], from); err != nil {
						break
					}
				}
				mu.Lock()
				delete(flows, from.String())
				mu.Unlock()
			})
		}
		mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

func dialUDP(to string) (*net.UDPConn, error) {
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return nil, err
	}
	return net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(ap))
}

// Close stops every listener and connection and waits for their
// goroutines.
func (p *Proxy) Close() error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	p.closed = true
	cs := p.closers
	p.closers = nil
	p.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	p.wg.Wait()
	return nil
}
