package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/cmd/internal/socket"
	"github.com/layerlab/layerlab/drivers"
)

// The conventional ports of the Docker API on tcp, as dockerd's.
const (
	portPlain = 2375
	portTLS   = 2376
)

// remoteFlags are how the API is served beyond unix sockets: dockerd's
// TLS flags and layerlab's --insecure-tcp.
type remoteFlags struct {
	tls, tlsVerify            bool
	caFile, certFile, keyFile string
	// insecureTCP allows tcp:// without TLS. dockerd 27+ refuses
	// unauthenticated tcp unless told (--tls=false); this flag says it in
	// its name.
	insecureTCP bool
	metricsAddr string
}

// endpoint is one -H value: a unix socket path or a tcp address.
type endpoint struct {
	proto string // "unix" or "tcp"
	addr  string // the socket's path, or HOST:PORT
}

func (e endpoint) String() string { return e.proto + "://" + e.addr }

// parseHost reads one -H value: unix:///absolute/path.sock or
// tcp://[HOST][:PORT], HOST 127.0.0.1 when empty (dockerd's default) and
// PORT 2376 with TLS, 2375 without, when missing.
func parseHost(h string, tlsOn bool) (endpoint, error) {
	bad := func(why string) error {
		return fmt.Errorf("-H %q: %w: %s; want unix:///absolute/path.sock or tcp://HOST:PORT", h, drivers.ErrInvalidArgument, why)
	}
	proto, rest, ok := strings.Cut(h, "://")
	if !ok {
		return endpoint{}, bad("no scheme")
	}
	switch proto {
	case "unix":
		if !filepath.IsAbs(rest) {
			return endpoint{}, bad("the socket path is not absolute")
		}
		return endpoint{proto: "unix", addr: filepath.Clean(rest)}, nil
	case "tcp":
	default:
		return endpoint{}, bad("scheme " + strconv.Quote(proto) + " is not served (fd:// neither: layerlabd is not socket-activated)")
	}
	u, err := url.Parse(h)
	if err != nil {
		return endpoint{}, bad(err.Error())
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return endpoint{}, bad("a tcp address has no path, query or user")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") && net.ParseIP(host) == nil {
		return endpoint{}, bad("host " + strconv.Quote(host) + " is not an address (an IPv6 address goes in brackets: tcp://[::1]:2376)")
	}
	if strings.HasSuffix(u.Host, ":") {
		return endpoint{}, bad("an empty port")
	}
	if port == "" {
		port = strconv.Itoa(portPlain)
		if tlsOn {
			port = strconv.Itoa(portTLS)
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return endpoint{}, bad("port " + strconv.Quote(port) + " is not 1-65535")
	}
	return endpoint{proto: "tcp", addr: net.JoinHostPort(host, port)}, nil
}

// endpoints parses every -H value and refuses plain tcp unless
// --insecure-tcp allows it: the API gives root on this machine to whoever
// reaches it.
func endpoints(hosts []string, r remoteFlags) ([]endpoint, error) {
	tlsOn := r.tls || r.tlsVerify
	if r.insecureTCP && tlsOn {
		return nil, fmt.Errorf("--insecure-tcp serves tcp without TLS, --tls/--tlsverify with it: %w; give one of them", drivers.ErrInvalidArgument)
	}
	if len(hosts) == 0 {
		return nil, fmt.Errorf("no -H: %w: give at least one, e.g. -H unix:///run/layerlab/layerlab.sock", drivers.ErrInvalidArgument)
	}
	var out []endpoint
	seen := map[string]bool{}
	for _, h := range hosts {
		e, err := parseHost(h, tlsOn)
		if err != nil {
			return nil, err
		}
		if seen[e.String()] {
			return nil, fmt.Errorf("-H %q: %w: given twice", h, drivers.ErrInvalidArgument)
		}
		seen[e.String()] = true
		if e.proto == "tcp" && !tlsOn && !r.insecureTCP {
			return nil, fmt.Errorf("-H %s: %w: serving the API on tcp without TLS gives root on this machine to anyone who reaches %s; "+
				"use --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY (clients need a certificate the CA signed), "+
				"or add --insecure-tcp if you really want plain tcp", e, drivers.ErrInvalidArgument, e.addr)
		}
		if e.proto == "tcp" && r.tls && !r.tlsVerify {
			// Encrypted, but anyone who reaches it gets root: refused
			// like plain tcp (dockerd allows it; this issue asks for
			// client certificates).
			return nil, fmt.Errorf("-H %s: %w: --tls without --tlsverify lets in any client that reaches %s; "+
				"add --tlsverify --tlscacert CA so only clients with a certificate the CA signed get in", e, drivers.ErrInvalidArgument, e.addr)
		}
		out = append(out, e)
	}
	return out, nil
}

// serverTLS is the TLS configuration of the tcp listeners: TLS 1.2 or
// newer with the server's certificate and, with --tlsverify, client
// certificates required and verified against --tlscacert. Plain --tls
// encrypts but authenticates no client, as dockerd's.
func serverTLS(r remoteFlags) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tlscert %s --tlskey %s: %w: %w; give the server's PEM certificate and its key", r.certFile, r.keyFile, err, drivers.ErrInvalidArgument)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if !r.tlsVerify {
		return cfg, nil
	}
	pem, err := os.ReadFile(r.caFile)
	if err != nil {
		return nil, fmt.Errorf("--tlscacert: %w: %w; give the PEM certificate of the CA that signs the clients' certificates", err, drivers.ErrInvalidArgument)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--tlscacert %s: %w: no PEM certificate in it", r.caFile, drivers.ErrInvalidArgument)
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// listen opens every endpoint; tcp ones with tlsCfg when it is not nil.
// It warns loudly of each plain tcp one.
func listen(eps []endpoint, tlsCfg *tls.Config, log *slog.Logger) (_ []net.Listener, err error) {
	var out []net.Listener
	defer func() {
		if err != nil {
			for _, l := range out {
				l.Close()
			}
		}
	}()
	for _, e := range eps {
		var l net.Listener
		switch e.proto {
		case "unix":
			l, err = socket.Listen(e.addr)
		default:
			l, err = net.Listen("tcp", e.addr)
			if err != nil {
				err = fmt.Errorf("-H %s: %w", e, err)
			}
		}
		if err != nil {
			return nil, err
		}
		out = append(out, l)
		switch {
		case e.proto != "tcp":
		case tlsCfg != nil:
			l = tls.NewListener(l, tlsCfg)
			out[len(out)-1] = l
		default:
			log.Warn("!!! SECURITY WARNING: SERVING THE API ON PLAIN TCP WITHOUT TLS (--insecure-tcp) !!! "+
				"anyone who can reach this address has root on this machine; use --tlsverify with client certificates instead", "host", e.String())
		}
	}
	return out, nil
}

// defaultCertPath is where dockerd looks for its TLS files by default:
// $DOCKER_CERT_PATH, else ~/.docker.
func defaultCertPath() string {
	if p := os.Getenv("DOCKER_CERT_PATH"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "/root/.docker"
	}
	return filepath.Join(home, ".docker")
}
