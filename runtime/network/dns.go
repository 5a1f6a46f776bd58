package network

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Lookup answers the embedded DNS server's questions: the addresses name
// has for the client at addr on the network netID (its containers' names,
// short IDs and aliases), none when the name is not one of them.
type Lookup func(netID string, client netip.Addr, name string) []netip.Addr

// Resolver is the embedded DNS server of user bridge networks: one UDP
// and one TCP server on each network's gateway address, port 53, in the
// daemon's namespace. Names of the network's containers and their
// --network-alias are answered, every address of a name in a shuffled
// order (round robin); other names go to the upstream servers, the host's
// resolv.conf's. dockerd listens on 127.0.0.11 inside each container
// through iptables DNAT; layerlabd needs no packet filter so, and the
// container's resolv.conf names the gateway instead.
type Resolver struct {
	lookup   Lookup
	upstream []string // host:port
	client   *dns.Client
	port     uint16 // 53; tests take any free one
	mu       sync.Mutex
	servers  map[string][]*dns.Server // by network ID
}

// NewResolver returns a resolver that answers with lookup and forwards to
// the nameservers of hostResolv (a resolv.conf; loopback ones are left
// out, as the containers' own resolv.conf leaves them).
func NewResolver(lookup Lookup, hostResolv []byte) *Resolver {
	r := &Resolver{lookup: lookup, port: 53, servers: map[string][]*dns.Server{}, client: &dns.Client{Timeout: 2 * time.Second}}
	for _, a := range ParseResolv(hostResolv).Nameservers {
		if !a.IsLoopback() {
			r.upstream = append(r.upstream, netip.AddrPortFrom(a, 53).String())
		}
	}
	return r
}

// Serve starts the servers of network netID on addr, port 53, unless
// they run.
func (r *Resolver) Serve(netID string, addr netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.servers[netID] != nil {
		return nil
	}
	at := netip.AddrPortFrom(addr, r.port).String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) { r.answer(netID, w, q) })
	pc, err := net.ListenPacket("udp4", at)
	if err != nil {
		return fmt.Errorf("DNS server of network %s on %s: %w", netID[:12], at, err)
	}
	l, err := net.Listen("tcp4", at)
	if err != nil {
		pc.Close()
		return fmt.Errorf("DNS server of network %s on %s: %w", netID[:12], at, err)
	}
	// Serve returns once both serve, so a Stop right after finds them
	// started.
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: h, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: l, Handler: h, NotifyStartedFunc: started.Done}
	for _, s := range []*dns.Server{udp, tcp} {
		go func() { _ = s.ActivateAndServe() }()
	}
	started.Wait()
	r.servers[netID] = []*dns.Server{udp, tcp}
	return nil
}

// Stop stops the servers of network netID, if they run.
func (r *Resolver) Stop(netID string) error {
	r.mu.Lock()
	ss := r.servers[netID]
	delete(r.servers, netID)
	r.mu.Unlock()
	var errs []error
	for _, s := range ss {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

// Close stops every server.
func (r *Resolver) Close() error {
	r.mu.Lock()
	var ids []string
	for id := range r.servers {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, r.Stop(id))
	}
	return errors.Join(errs...)
}

// answer answers one query: A questions for the network's names, AAAA
// for them empty (the networks are IPv4 only), anything else forwarded.
func (r *Resolver) answer(netID string, w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 {
		r.fail(w, q, dns.RcodeFormatError)
		return
	}
	question := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	var client netip.Addr
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		client = ap.Addr().Unmap()
	}
	if question.Qclass == dns.ClassINET && (question.Qtype == dns.TypeA || question.Qtype == dns.TypeAAAA) {
		if ips := r.lookup(netID, client, name); len(ips) > 0 {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Authoritative, m.RecursionAvailable = true, true
			if question.Qtype == dns.TypeA {
				rand.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
				for _, ip := range ips {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 600}, A: ip.AsSlice()})
				}
			}
			_ = w.WriteMsg(m)
			return
		}
	}
	r.forward(w, q)
}

// forward asks the upstream servers in turn; without one, or when none
// answers, the name does not exist (a container of a namespace with no
// way out has no other resolver).
func (r *Resolver) forward(w dns.ResponseWriter, q *dns.Msg) {
	for _, up := range r.upstream {
		resp, _, err := r.client.Exchange(q, up)
		if err == nil && resp != nil {
			_ = w.WriteMsg(resp)
			return
		}
	}
	if len(r.upstream) == 0 {
		r.fail(w, q, dns.RcodeNameError)
		return
	}
	r.fail(w, q, dns.RcodeServerFailure)
}

func (r *Resolver) fail(w dns.ResponseWriter, q *dns.Msg, code int) {
	m := new(dns.Msg)
	m.SetRcode(q, code)
	m.RecursionAvailable = true
	_ = w.WriteMsg(m)
}
