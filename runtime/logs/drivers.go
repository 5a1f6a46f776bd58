package logs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// The log drivers' names.
const (
	JSONFileDriver = "json-file"
	LocalDriver    = "local"
	SyslogDriver   = "syslog"
	FluentdDriver  = "fluentd"
	NoneDriver     = "none"
)

// Drivers returns the names of the log drivers layerlabd has, sorted.
func Drivers() []string {
	return []string{FluentdDriver, JSONFileDriver, LocalDriver, NoneDriver, SyslogDriver}
}

// spec is what a driver takes and whether it sends elsewhere (and so
// gets the dual-logging cache).
type spec struct {
	keys   []string
	check  func(map[string]string) error
	remote bool
}

// attrKeys select the attributes json-file and fluentd record
// (Attributes) and the tag; syslog takes them too and, as dockerd's,
// records none.
func attrKeys() []string { return []string{"env", "env-regex", "labels", "labels-regex", "tag"} }

func lookup(name string) (spec, bool) {
	switch name {
	case JSONFileDriver:
		return spec{keys: append(attrKeys(), "max-size", "max-file", "compress"), check: func(o map[string]string) error {
			_, err := parseFileOptions(JSONFileDriver, "", o, FileOptions{})
			return err
		}}, true
	case LocalDriver:
		return spec{keys: []string{"max-size", "max-file", "compress"}, check: func(o map[string]string) error {
			_, err := parseFileOptions(LocalDriver, "", o, localDefaults())
			return err
		}}, true
	case SyslogDriver:
		return spec{keys: append(attrKeys(), "syslog-address", "syslog-facility", "syslog-format",
			"syslog-tls-ca-cert", "syslog-tls-cert", "syslog-tls-key", "syslog-tls-skip-verify"), remote: true,
			check: func(o map[string]string) error { _, err := parseSyslogOptions(o); return err }}, true
	case FluentdDriver:
		return spec{keys: append(attrKeys(), "fluentd-address", "fluentd-async", "fluentd-async-connect", "fluentd-buffer-limit",
			"fluentd-retry-wait", "fluentd-max-retries", "fluentd-sub-second-precision", "fluentd-request-ack"), remote: true,
			check: func(o map[string]string) error { _, err := parseFluentdOptions(o); return err }}, true
	case NoneDriver:
		return spec{check: func(map[string]string) error { return nil }}, true
	}
	return spec{}, false
}

// cacheKeys are the dual-logging cache's options, taken by every remote
// driver (dockerd's names).
func cacheKeys() []string {
	return []string{"cache-disabled", "cache-max-size", "cache-max-file", "cache-compress"}
}

// cacheOptions reads the cache's options: dockerd's defaults (the local
// driver's: 20m, 5 files, compressed); ok is false with cache-disabled.
func cacheOptions(driver string, opts map[string]string) (o FileOptions, ok bool, err error) {
	if v, set := opts["cache-disabled"]; set {
		off, err := strconv.ParseBool(v)
		if err != nil {
			return o, false, fmt.Errorf("cache-disabled=%q: want true or false: %w", v, ErrOption)
		}
		if off {
			return o, false, nil
		}
	}
	o, err = parseFileOptions(driver, "cache-", opts, localDefaults())
	return o, err == nil, err
}

// Validate checks a log configuration as dockerd does at create and at
// start-up: the driver exists and takes every option, with good values.
func Validate(driver string, opts map[string]string) error {
	s, ok := lookup(driver)
	if !ok {
		return fmt.Errorf("logger: no log driver named '%s' is registered (supported: %s): %w", driver, strings.Join(Drivers(), ", "), drivers.ErrInvalidArgument)
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !slices.Contains(s.keys, k) && !(s.remote && slices.Contains(cacheKeys(), k)) {
			takes := "no options"
			if len(s.keys) > 0 {
				takes = "it takes " + strings.Join(s.keys, ", ")
				if s.remote {
					takes += ", " + strings.Join(cacheKeys(), ", ")
				}
			}
			return fmt.Errorf("unknown log opt '%s' for %s log driver (%s): %w", k, driver, takes, ErrOption)
		}
	}
	if s.remote {
		if _, _, err := cacheOptions(driver, opts); err != nil {
			return err
		}
	}
	if _, err := Attributes(Info{}, opts); err != nil {
		return err // a bad labels-regex or env-regex
	}
	return s.check(opts)
}

// JSONPath is where the json-file driver keeps the container's log.
func JSONPath(i Info) string { return filepath.Join(i.Dir, i.ContainerID+"-json.log") }

func localPath(i Info) string { return filepath.Join(i.Dir, "local-logs", "container.log") }

func cachePath(i Info) string { return filepath.Join(i.Dir, "local-logs", "container-cached.log") }

// New opens the container's logger for driver with opts (validated).
func New(i Info, driver string, opts map[string]string) (Logger, error) {
	if err := Validate(driver, opts); err != nil {
		return nil, err
	}
	switch driver {
	case JSONFileDriver:
		o, _ := parseFileOptions(driver, "", opts, FileOptions{})
		attrs, err := Attributes(i, opts)
		if err != nil {
			return nil, err
		}
		j, err := OpenJSONFile(JSONPath(i), o)
		if err != nil {
			return nil, err
		}
		j.attrs = attrs
		return j, nil
	case LocalDriver:
		o, _ := parseFileOptions(driver, "", opts, localDefaults())
		if err := os.MkdirAll(filepath.Dir(localPath(i)), 0o750); err != nil {
			return nil, err
		}
		return OpenLocal(localPath(i), o)
	case NoneDriver:
		return none{}, nil
	}
	var remote Logger
	var err error
	if driver == SyslogDriver {
		remote, err = OpenSyslog(i, opts)
	} else {
		remote, err = OpenFluentd(i, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to initialize logging driver: %w", err)
	}
	o, cached, _ := cacheOptions(driver, opts)
	if !cached {
		return remote, nil
	}
	if err := os.MkdirAll(filepath.Dir(cachePath(i)), 0o750); err != nil {
		return nil, errors.Join(err, remote.Close())
	}
	cache, err := OpenLocal(cachePath(i), o)
	if err != nil {
		return nil, errors.Join(err, remote.Close())
	}
	return dual{remote: remote, cache: cache}, nil
}

// NewSource is where `docker logs` reads the container's log: the
// driver's own files, or the dual-logging cache of a remote driver; a
// driver that keeps nothing answers ErrNotReadable.
func NewSource(i Info, driver string, opts map[string]string) (Source, error) {
	switch driver {
	case JSONFileDriver:
		return JSONSource(JSONPath(i)), nil
	case LocalDriver:
		return LocalSource(localPath(i)), nil
	case SyslogDriver, FluentdDriver:
		if _, cached, err := cacheOptions(driver, opts); err == nil && cached {
			return LocalSource(cachePath(i)), nil
		}
	}
	return Source{}, ErrNotReadable
}

// Remove deletes every log file any driver kept for the container.
func Remove(i Info) error {
	errs := []error{removeFiles(JSONPath(i)), removeFiles(localPath(i)), removeFiles(cachePath(i))}
	if err := os.Remove(filepath.Dir(localPath(i))); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// none is the none driver: nothing is kept.
type none struct{}

func (none) Log(*Message) error { return nil }
func (none) Close() error       { return nil }

// dual is a remote driver with its local cache, dockerd's dual logging
// (20.10+): `docker logs` reads the cache.
type dual struct {
	remote Logger
	cache  *Local
}

// Log writes the cache first, so `docker logs` has the line even when
// the remote end fails; the remote's error is the one returned.
func (d dual) Log(m *Message) error {
	cerr := d.cache.Log(m)
	if err := d.remote.Log(m); err != nil {
		return err
	}
	return cerr
}

func (d dual) Close() error { return errors.Join(d.remote.Close(), d.cache.Close()) }
