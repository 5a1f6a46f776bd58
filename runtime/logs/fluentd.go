package logs

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/fluent/fluent-logger-golang/fluent"
)

// dockerd's fluentd defaults.
const (
	fluentdPort        = 24224
	fluentdBufferLimit = 1 << 20
	fluentdRetryWait   = time.Second
	fluentdMaxRetries  = math.MaxInt32
)

// parseFluentdAddress reads fluentd-address as dockerd does: host[:port],
// tcp://host[:port] or unix:///path; empty is 127.0.0.1:24224.
func parseFluentdAddress(v string, c *fluent.Config) error {
	c.FluentNetwork, c.FluentHost, c.FluentPort = "tcp", "127.0.0.1", fluentdPort
	if v == "" {
		return nil
	}
	bad := func(why string) error {
		return fmt.Errorf("fluentd-address=%q: %s; want host:port, tcp://host:port or unix:///path: %w", v, why, ErrOption)
	}
	if !strings.Contains(v, "://") {
		v = "tcp://" + v
	}
	u, err := url.Parse(v)
	if err != nil {
		return bad(err.Error())
	}
	switch u.Scheme {
	case "unix":
		if u.Path == "" || u.Host != "" {
			return bad("a socket path must be absolute")
		}
		c.FluentNetwork, c.FluentSocketPath = "unix", u.Path
		return nil
	case "tcp":
		if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return bad("want only host and port")
		}
		host, port, err := net.SplitHostPort(u.Host)
		if err != nil {
			c.FluentHost = strings.Trim(u.Host, "[]")
			return nil
		}
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("the port must be 1-65535")
		}
		c.FluentHost, c.FluentPort = host, n
		return nil
	}
	return bad("unknown scheme " + strconv.Quote(u.Scheme))
}

// parseFluentdOptions turns the fluentd driver's --log-opt values into
// the client's configuration.
func parseFluentdOptions(opts map[string]string) (fluent.Config, error) {
	c := fluent.Config{BufferLimit: fluentdBufferLimit, RetryWait: int(fluentdRetryWait / time.Millisecond), MaxRetry: fluentdMaxRetries}
	if err := parseFluentdAddress(opts["fluentd-address"], &c); err != nil {
		return c, err
	}
	for _, k := range []string{"fluentd-async", "fluentd-async-connect", "fluentd-sub-second-precision", "fluentd-request-ack"} {
		v, ok := opts[k]
		if !ok {
			continue
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("%s=%q: want true or false: %w", k, v, ErrOption)
		}
		switch k {
		case "fluentd-async", "fluentd-async-connect":
			c.Async = c.Async || b
		case "fluentd-sub-second-precision":
			c.SubSecondPrecision = b
		case "fluentd-request-ack":
			c.RequestAck = b
		}
	}
	if v, ok := opts["fluentd-buffer-limit"]; ok {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 1 || n > math.MaxInt32 {
			return c, fmt.Errorf("fluentd-buffer-limit=%q: want a positive size such as 8m: %w", v, ErrOption)
		}
		c.BufferLimit = int(n)
	}
	if v, ok := opts["fluentd-retry-wait"]; ok {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > time.Hour {
			return c, fmt.Errorf("fluentd-retry-wait=%q: want a duration between 1ms and 1h such as 1s: %w", v, ErrOption)
		}
		c.RetryWait = int(d / time.Millisecond)
	}
	if v, ok := opts["fluentd-max-retries"]; ok {
		n, err := strconv.ParseUint(v, 10, 31)
		if err != nil || n < 1 {
			return c, fmt.Errorf("fluentd-max-retries=%q: want a count of at least 1: %w", v, ErrOption)
		}
		c.MaxRetry = int(n)
	}
	// As dockerd: an async client's Close drops what it could not send
	// instead of retrying for ever, so a container's end never hangs on
	// a fluentd that is gone.
	c.ForceStopAsyncSend = c.Async
	if t := opts["tag"]; t != "" {
		if _, err := Tag(t, Info{}); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Fluentd sends a container's lines to fluentd over its forward protocol
// through fluent-logger-golang, each as a record with dockerd's fields:
// container_id, container_name (with dockerd's leading slash), source
// and log.
type Fluentd struct {
	w      *fluent.Fluent
	tag    string
	id     string
	name   string
	attrs  map[string]string // added to every record (labels/env options)
	closed bool
}

// OpenFluentd connects (or, with fluentd-async, starts connecting) to the
// fluentd that opts name, for the container i.
func OpenFluentd(i Info, opts map[string]string) (*Fluentd, error) {
	c, err := parseFluentdOptions(opts)
	if err != nil {
		return nil, err
	}
	tag, err := Tag(opts["tag"], i)
	if err != nil {
		return nil, err
	}
	w, err := fluent.New(c)
	if err != nil {
		where := c.FluentSocketPath
		if c.FluentNetwork == "tcp" {
			where = net.JoinHostPort(c.FluentHost, strconv.Itoa(c.FluentPort))
		}
		return nil, fmt.Errorf("fluentd at %s: %w", where, err)
	}
	attrs, err := Attributes(i, opts)
	if err != nil {
		w.Close()
		return nil, err
	}
	return &Fluentd{w: w, tag: tag, id: i.ContainerID, name: "/" + strings.TrimPrefix(i.ContainerName, "/"), attrs: attrs}, nil
}

// Log posts m as one record at m's time.
func (f *Fluentd) Log(m *Message) error {
	rec := make(map[string]string, 4+len(f.attrs))
	for k, v := range f.attrs {
		rec[k] = v
	}
	rec["container_id"], rec["container_name"], rec["source"], rec["log"] = f.id, f.name, m.Stream, string(m.Line)
	if m.Partial {
		rec["partial_message"] = "true"
	}
	return f.w.PostWithTime(f.tag, m.Time, rec)
}

// Close flushes what async mode still holds and closes the connection.
func (f *Fluentd) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	return f.w.Close()
}
