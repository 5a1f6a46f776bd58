package logs

// The syslog driver formats and frames messages itself instead of using
// Go's log/syslog, which has neither RFC 5424 nor TLS, and no library in
// the module list this project may use does both (dockerd vendors
// srslog; it is not served here). The formats are dockerd's byte for
// byte: with no syslog-format its "unix" format (RFC 3164 without the
// hostname), rfc3164, and rfc5424/rfc5424micro with the tag as APP-NAME
// and MSGID. Every message ends with a newline, as srslog adds it;
// tcp+tls with an RFC 5424 format frames messages by octet counting (RFC
// 5425 / RFC 6587 3.4.1), as dockerd does; every other stream transport
// is newline-framed (RFC 6587 3.4.2) and each datagram is one message.

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// syslogFacilities are the facilities by number; "-" is unused.
const syslogFacilities = "kern user mail daemon auth syslog lpr news uucp cron authpriv ftp - - - - local0 local1 local2 local3 local4 local5 local6 local7"

// Severities dockerd logs at: stdout as info, stderr as err.
const (
	severityErr  = 3
	severityInfo = 6
)

// syslogFormatter renders one message: priority, hostname, tag, content,
// the message's time and the sender's pid.
type syslogFormatter func(pri int, hostname, tag, content string, t time.Time, pid int) string

func unixFormat(pri int, _, tag, content string, t time.Time, pid int) string {
	return fmt.Sprintf("<%d>%s %s[%d]: %s", pri, t.Format(time.Stamp), tag, pid, content)
}

func rfc3164Format(pri int, hostname, tag, content string, t time.Time, pid int) string {
	return fmt.Sprintf("<%d>%s %s %s[%d]: %s", pri, t.Format(time.Stamp), hostname, tag, pid, content)
}

func rfc5424Format(layout string) syslogFormatter {
	return func(pri int, hostname, tag, content string, t time.Time, pid int) string {
		return fmt.Sprintf("<%d>1 %s %s %s %d %s - %s", pri, t.Format(layout), hostname, tag, pid, tag, content)
	}
}

// syslogOptions are the syslog driver's --log-opt values.
type syslogOptions struct {
	network, addr string // "" for the local syslog socket
	tls           *tls.Config
	facility      int
	format        syslogFormatter
	octetCount    bool
	tag           string // the template
}

func parseSyslogFacility(v string) (int, error) {
	if v == "" {
		return 3, nil // daemon
	}
	names := strings.Fields(syslogFacilities)
	for i, name := range names {
		if name != "-" && name == v {
			return i, nil
		}
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 && n < len(names) && names[n] != "-" {
		return n, nil
	}
	return 0, fmt.Errorf("syslog-facility=%q: want a facility name (daemon, user, local0 ... local7, ...) or its number: %w", v, ErrOption)
}

// parseSyslogAddress reads syslog-address: unix:///path, unixgram:///path,
// udp://host[:port], tcp://host[:port] or tcp+tls://host[:port] (port 514
// by default, as dockerd).
func parseSyslogAddress(v string) (network, addr string, err error) {
	if v == "" {
		return "", "", nil
	}
	bad := func(why string) (string, string, error) {
		return "", "", fmt.Errorf("syslog-address=%q: %s; want unix:///path, unixgram:///path, udp://host:port, tcp://host:port or tcp+tls://host:port: %w", v, why, ErrOption)
	}
	u, err := url.Parse(v)
	if err != nil {
		return bad(err.Error())
	}
	switch u.Scheme {
	case "unix", "unixgram":
		if u.Path == "" || u.Host != "" {
			return bad("a socket path must be absolute")
		}
		return u.Scheme, u.Path, nil
	case "udp", "tcp", "tcp+tls":
		if u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return bad("want only host and port")
		}
		host := u.Host
		if _, port, err := net.SplitHostPort(host); err != nil {
			host = net.JoinHostPort(strings.Trim(host, "[]"), "514")
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return bad("the port must be 1-65535")
		}
		return u.Scheme, host, nil
	}
	return bad("unknown scheme " + strconv.Quote(u.Scheme))
}

func parseSyslogOptions(opts map[string]string) (syslogOptions, error) {
	var o syslogOptions
	var err error
	if o.network, o.addr, err = parseSyslogAddress(opts["syslog-address"]); err != nil {
		return o, err
	}
	if o.facility, err = parseSyslogFacility(opts["syslog-facility"]); err != nil {
		return o, err
	}
	switch f := opts["syslog-format"]; f {
	case "":
		o.format = unixFormat
	case "rfc3164":
		o.format = rfc3164Format
	case "rfc5424", "rfc5424micro":
		o.format = rfc5424Format(time.RFC3339)
		if f == "rfc5424micro" {
			o.format = rfc5424Format("2006-01-02T15:04:05.000000Z07:00")
		}
		o.octetCount = o.network == "tcp+tls"
	default:
		return o, fmt.Errorf("syslog-format=%q: want rfc3164, rfc5424 or rfc5424micro: %w", f, ErrOption)
	}
	if o.tag = opts["tag"]; o.tag != "" {
		if _, err := Tag(o.tag, Info{}); err != nil {
			return o, err
		}
	}
	tlsKeys := []string{"syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify"}
	if o.network != "tcp+tls" {
		for _, k := range tlsKeys {
			if _, ok := opts[k]; ok {
				return o, fmt.Errorf("%s needs syslog-address tcp+tls://host:port: %w", k, ErrOption)
			}
		}
		return o, nil
	}
	host, _, _ := net.SplitHostPort(o.addr)
	o.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if v, ok := opts["syslog-tls-skip-verify"]; ok {
		if o.tls.InsecureSkipVerify, err = strconv.ParseBool(v); err != nil {
			return o, fmt.Errorf("syslog-tls-skip-verify=%q: want true or false: %w", v, ErrOption)
		}
	}
	return o, nil
}

// loadTLS reads the certificate files (at open, not at validation: the
// files may be put in place after the container is created).
func (o *syslogOptions) loadTLS(opts map[string]string) error {
	if o.tls == nil {
		return nil
	}
	if ca := opts["syslog-tls-ca-cert"]; ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return fmt.Errorf("syslog-tls-ca-cert: %w: %w", err, ErrOption)
		}
		o.tls.RootCAs = x509.NewCertPool()
		if !o.tls.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("syslog-tls-ca-cert %s: no PEM certificate in it: %w", ca, ErrOption)
		}
	}
	cert, key := opts["syslog-tls-cert"], opts["syslog-tls-key"]
	if (cert == "") != (key == "") {
		return fmt.Errorf("syslog-tls-cert and syslog-tls-key go together: %w", ErrOption)
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return fmt.Errorf("syslog-tls-cert/syslog-tls-key: %w: %w", err, ErrOption)
		}
		o.tls.Certificates = []tls.Certificate{pair}
	}
	return nil
}

// Syslog sends a container's lines to a syslog server.
type Syslog struct {
	mu       sync.Mutex
	o        syslogOptions
	tag      string
	hostname string
	pid      int
	conn     net.Conn
}

// OpenSyslog connects to the syslog server opts name for the container i.
func OpenSyslog(i Info, opts map[string]string) (*Syslog, error) {
	o, err := parseSyslogOptions(opts)
	if err != nil {
		return nil, err
	}
	if err := o.loadTLS(opts); err != nil {
		return nil, err
	}
	s := &Syslog{o: o, pid: os.Getpid()}
	if s.tag, err = Tag(o.tag, i); err != nil {
		return nil, err
	}
	s.hostname, _ = os.Hostname()
	if s.conn, err = s.dial(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Syslog) dial() (net.Conn, error) {
	const timeout = 10 * time.Second
	d := net.Dialer{Timeout: timeout}
	var c net.Conn
	var err error
	switch s.o.network {
	case "":
		// The local syslog socket, where dockerd's srslog looks for it.
		for _, p := range []string{"/dev/log", "/var/run/syslog", "/var/run/log"} {
			for _, n := range []string{"unixgram", "unix"} {
				if c, err = d.Dial(n, p); err == nil {
					return c, nil
				}
			}
		}
		return nil, fmt.Errorf("syslog: no local syslog socket (/dev/log): %w; set --log-opt syslog-address", err)
	case "unix":
		if c, err = d.Dial("unixgram", s.o.addr); err != nil {
			c, err = d.Dial("unix", s.o.addr)
		}
	case "tcp+tls":
		c, err = tls.DialWithDialer(&d, "tcp", s.o.addr, s.o.tls)
	default:
		c, err = d.Dial(s.o.network, s.o.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("syslog %s://%s: %w", s.o.network, s.o.addr, err)
	}
	return c, nil
}

// frame renders m as the bytes sent for it, with m's time in the
// daemon's zone.
func (s *Syslog) frame(m *Message) []byte { return s.frameAt(m, m.Time.Local()) }

func (s *Syslog) frameAt(m *Message, t time.Time) []byte {
	sev := severityInfo
	if m.Stream == "stderr" {
		sev = severityErr
	}
	msg := s.o.format(s.o.facility<<3|sev, s.hostname, s.tag, string(m.Line), t, s.pid)
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	if s.o.octetCount {
		msg = strconv.Itoa(len(msg)) + " " + msg
	}
	return []byte(msg)
}

// Log sends m; after a failed send it reconnects once and sends again,
// as srslog does.
func (s *Syslog) Log(m *Message) error {
	data := s.frame(m)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		if _, err := s.conn.Write(data); err == nil {
			return nil
		}
		s.conn.Close()
		s.conn = nil
	}
	c, err := s.dial()
	if err != nil {
		return err
	}
	s.conn = c
	_, err = c.Write(data)
	return err
}

// Close closes the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
