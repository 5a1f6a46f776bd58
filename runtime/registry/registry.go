// Package registry is layerlabd's side of a Docker registry: pull, push
// and login through go-containerregistry (remote, authn, name), with
// dockerd's insecure-registry rules and per-registry CA certificates.
// It knows nothing of the image store: the daemon hands it images to push
// and takes the images it fetched.
package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/layerlab/layerlab/drivers"
)

// ErrUnauthorized is a registry that refused the credentials given (or
// wanted some and got none).
var ErrUnauthorized = errors.New("unauthorized")

// DefaultCertsDir is where per-registry CA certificates live by default,
// one directory per HOST[:PORT], like dockerd's /etc/docker/certs.d.
const DefaultCertsDir = "/etc/layerlab/certs.d"

// Config is what the daemon was told about registries.
type Config struct {
	// Insecure are the --insecure-registry entries: HOST[:PORT] names
	// and CIDRs whose registries may answer plain HTTP or HTTPS with a
	// certificate nobody vouches for.
	Insecure []string
	// CertsDir holds <HOST[:PORT]>/*.crt CA certificates (and
	// client.cert/client.key pairs) for registries with their own CA.
	CertsDir string
}

// Service talks to registries under one Config. It holds no connections:
// every call builds its transport, so a certificate added to CertsDir
// counts from the next call on.
type Service struct {
	hosts []string     // insecure HOST[:PORT] entries, lower case
	nets  []*net.IPNet // insecure CIDRs
	certs string
}

// New checks cfg and returns its Service.
func New(cfg Config) (*Service, error) {
	s := &Service{certs: cfg.CertsDir}
	if s.certs == "" {
		s.certs = DefaultCertsDir
	}
	for _, e := range cfg.Insecure {
		n, host, err := ParseInsecure(e)
		if err != nil {
			return nil, err
		}
		if n != nil {
			s.nets = append(s.nets, n)
		} else {
			s.hosts = append(s.hosts, host)
		}
	}
	return s, nil
}

// ParseInsecure reads one --insecure-registry entry: a CIDR (returned as
// the network) or HOST[:PORT] (returned lower-cased), without a scheme or
// a path.
func ParseInsecure(entry string) (*net.IPNet, string, error) {
	e := strings.TrimSpace(entry)
	if e == "" {
		return nil, "", fmt.Errorf("--insecure-registry %q: empty; want HOST[:PORT] or a CIDR such as 10.0.0.0/8: %w", entry, drivers.ErrInvalidArgument)
	}
	if strings.Contains(e, "://") {
		return nil, "", fmt.Errorf("--insecure-registry %q: give HOST[:PORT] without a scheme (insecure means http is allowed): %w", entry, drivers.ErrInvalidArgument)
	}
	if strings.Contains(e, "/") {
		_, n, err := net.ParseCIDR(e)
		if err != nil {
			return nil, "", fmt.Errorf("--insecure-registry %q: not a CIDR (%v); want HOST[:PORT] or e.g. 10.0.0.0/8: %w", entry, err, drivers.ErrInvalidArgument)
		}
		return n, "", nil
	}
	if err := checkHostPort(e); err != nil {
		return nil, "", fmt.Errorf("--insecure-registry %q: %v; want HOST[:PORT]: %w", entry, err, drivers.ErrInvalidArgument)
	}
	return nil, strings.ToLower(e), nil
}

// hostname is a DNS name as registries are named.
var hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// checkHostPort accepts HOST[:PORT]: a DNS name or an IP ([v6] with a
// port), and a port 1-65535.
func checkHostPort(s string) error {
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else if strings.Count(s, ":") > 1 && net.ParseIP(s) != nil {
		host = s // a bare IPv6 address
	} else if strings.Contains(s, ":") {
		return err
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	if net.ParseIP(host) == nil && !hostname.MatchString(host) {
		return fmt.Errorf("%q is neither a host name nor an IP address", host)
	}
	return nil
}

// splitHost returns a registry's host without its port (and brackets).
func splitHost(registry string) string {
	if h, _, err := net.SplitHostPort(registry); err == nil {
		return h
	}
	return strings.Trim(registry, "[]")
}

// loopback says whether a registry is on this machine: localhost, or a
// loopback IP literal. Those may speak plain HTTP, as dockerd allows
// 127.0.0.0/8.
func loopback(registry string) bool {
	h := strings.ToLower(splitHost(registry))
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Insecure says whether registry (HOST[:PORT]) may be reached over plain
// HTTP or with an unverified certificate: loopback, listed by name, or an
// IP literal in a listed CIDR.
func (s *Service) Insecure(registry string) bool {
	if loopback(registry) {
		return true
	}
	r := strings.ToLower(registry)
	host := strings.ToLower(splitHost(registry))
	for _, h := range s.hosts {
		if h == r || h == host {
			return true
		}
	}
	if ip := net.ParseIP(host); ip != nil {
		for _, n := range s.nets {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// InsecureNets and InsecureHosts are what /info reports: the CIDRs (with
// loopback's first, as dockerd's 127.0.0.0/8) and the names.
func (s *Service) InsecureNets() []*net.IPNet {
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	_, lo6, _ := net.ParseCIDR("::1/128")
	return append([]*net.IPNet{lo, lo6}, s.nets...)
}

// InsecureHosts returns the HOST[:PORT] entries, sorted.
func (s *Service) InsecureHosts() []string {
	out := append([]string(nil), s.hosts...)
	sort.Strings(out)
	return out
}

// parse parses a reference and returns it again with name.Insecure
// when its registry may use plain HTTP, so go-containerregistry falls back
// to http there (and only there: the transport refuses it elsewhere).
func (s *Service) parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w: %w", ref, drivers.ErrInvalidArgument, err)
	}
	if s.Insecure(r.Context().RegistryStr()) {
		return name.ParseReference(ref, name.Insecure)
	}
	return r, nil
}

// transport is the HTTP transport for one registry: its own CAs from the
// certs directory on top of the system's, no verification for insecure
// registries, no proxy (layerlabd reaches registries directly), bounded
// dials so an unreachable registry fails in seconds, and no plain HTTP
// unless the registry is insecure.
func (s *Service) transport(registry string) (http.RoundTripper, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.Insecure(registry) {
		tc.InsecureSkipVerify = true // dockerd's meaning of insecure: any certificate
	} else if err := s.loadCerts(registry, tc); err != nil {
		return nil, err
	}
	t := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
	}
	return httpsOnly{rt: t, registry: registry, allowHTTP: s.Insecure(registry)}, nil
}

// loadCerts adds CertsDir/<registry>/*.crt to the system roots and the
// client.cert/client.key pair, when present.
func (s *Service) loadCerts(registry string, tc *tls.Config) error {
	dir := filepath.Join(s.certs, registry)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry certificates for %s: %w", registry, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	var certFile, keyFile string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		switch filepath.Ext(e.Name()) {
		case ".crt":
			pem, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("registry CA %s: %w", p, err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("registry CA %s holds no PEM certificate: %w", p, drivers.ErrInvalidArgument)
			}
		case ".cert":
			certFile = p
		case ".key":
			keyFile = p
		}
	}
	tc.RootCAs = pool
	if certFile != "" && keyFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("registry client certificate in %s: %w", dir, err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return nil
}

// httpsOnly refuses plain-HTTP requests to a registry that is not
// insecure: go-containerregistry itself would fall back to http for
// private addresses, which dockerd does not.
type httpsOnly struct {
	rt        http.RoundTripper
	registry  string
	allowHTTP bool
}

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !h.allowHTTP {
		return nil, fmt.Errorf("registry %s: plain http refused: it is not an insecure registry (start layerlabd with --insecure-registry %s, or give it HTTPS): %w",
			h.registry, h.registry, drivers.ErrUnavailable)
	}
	return h.rt.RoundTrip(r)
}

// withTimeout bounds a login (ping, token exchange, GET /v2/); pulls and
// pushes run under the request's context, their blob reads being lazy.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*time.Minute)
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
