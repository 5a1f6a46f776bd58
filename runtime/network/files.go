package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// Resolv is what a resolv.conf says that a container's copy keeps.
type Resolv struct {
	Nameservers []netip.Addr
	Search      []string
	Options     []string
}

// ParseResolv reads a resolv.conf. Lines it does not know and addresses
// that do not parse are skipped, as the C library's resolver skips them.
func ParseResolv(data []byte) Resolv {
	var r Resolv
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				r.Nameservers = append(r.Nameservers, a)
			}
		case "search", "domain":
			r.Search = append([]string(nil), f[1:]...)
		case "options":
			r.Options = append(r.Options, f[1:]...)
		}
	}
	return r
}

// ContainerResolv is the resolv.conf of a container with its own network
// namespace: the host's without loopback nameservers, which the container
// cannot reach from its namespace (dockerd's rule). When none remain the
// file has no nameserver: layerlabd names no public resolver of its own.
func ContainerResolv(host []byte) []byte {
	r := ParseResolv(host)
	var b bytes.Buffer
	b.WriteString("# written by layerlabd from the host's resolv.conf, loopback nameservers left out\n")
	for _, a := range r.Nameservers {
		if !a.IsLoopback() {
			fmt.Fprintf(&b, "nameserver %s\n", a)
		}
	}
	if len(r.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.Search, " "))
	}
	if len(r.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.Options, " "))
	}
	return b.Bytes()
}

// EmbeddedResolv is the resolv.conf of a container whose first network
// is a user bridge: the network's embedded DNS server on its gateway,
// with the host's search domains and options; the host's nameservers
// are that server's upstream.
func EmbeddedResolv(server netip.Addr, host []byte) []byte {
	r := ParseResolv(host)
	var b bytes.Buffer
	b.WriteString("# written by layerlabd: the network's embedded DNS server answers container names and aliases\n")
	fmt.Fprintf(&b, "nameserver %s\n", server)
	if len(r.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(r.Search, " "))
	}
	if len(r.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(r.Options, " "))
	}
	return b.Bytes()
}

// HostEntry is one line of /etc/hosts.
type HostEntry struct {
	IP    string
	Names []string
}

// Hosts is a container's /etc/hosts: localhost, Docker's IPv6 lines,
// then the entries (its own address and name first, then --link and
// --add-host ones).
func Hosts(entries []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	for _, e := range entries {
		if e.IP != "" && len(e.Names) > 0 {
			fmt.Fprintf(&b, "%s\t%s\n", e.IP, strings.Join(e.Names, " "))
		}
	}
	return b.Bytes()
}
