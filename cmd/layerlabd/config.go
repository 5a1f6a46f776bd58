package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/daemon"
)

// defaultConfigFile is read when --config-file is not given; its absence
// is not an error (a named file's is).
const defaultConfigFile = "/etc/layerlab/daemon.json"

// fileConfig is a daemon.json: dockerd's keys for the options layerlabd
// has, plus storage-drivers and insecure-tcp, layerlab's own flags. Each
// pointer or slice is nil when the file does not set that key.
type fileConfig struct {
	Hosts          []string          `json:"hosts,omitempty"`
	DataRoot       *string           `json:"data-root,omitempty"`
	ExecRoot       *string           `json:"exec-root,omitempty"`
	StorageDriver  *string           `json:"storage-driver,omitempty"`
	StorageDrivers []string          `json:"storage-drivers,omitempty"`
	StorageOpts    []string          `json:"storage-opts,omitempty"`
	Debug          *bool             `json:"debug,omitempty"`
	TLS            *bool             `json:"tls,omitempty"`
	TLSVerify      *bool             `json:"tlsverify,omitempty"`
	TLSCACert      *string           `json:"tlscacert,omitempty"`
	TLSCert        *string           `json:"tlscert,omitempty"`
	TLSKey         *string           `json:"tlskey,omitempty"`
	InsecureTCP    *bool             `json:"insecure-tcp,omitempty"`
	LogDriver      *string           `json:"log-driver,omitempty"`
	LogOpts        map[string]string `json:"log-opts,omitempty"`
	MetricsAddr    *string           `json:"metrics-addr,omitempty"`
	Runtime        *string           `json:"runtime,omitempty"`
	CgroupParent   *string           `json:"cgroup-parent,omitempty"`
	Insecure       []string          `json:"insecure-registries,omitempty"`

	keys []string // the keys the file sets, sorted
}

// configFlags maps each daemon.json key to the flag it stands for.
func configFlags() map[string]string {
	return map[string]string{
		"hosts": "host", "data-root": "data-root", "exec-root": "exec-root",
		"storage-driver": "storage-driver", "storage-drivers": "storage-drivers", "storage-opts": "storage-opt",
		"debug": "debug", "tls": "tls", "tlsverify": "tlsverify", "tlscacert": "tlscacert", "tlscert": "tlscert",
		"tlskey": "tlskey", "insecure-tcp": "insecure-tcp", "log-driver": "log-driver", "log-opts": "log-opt",
		"metrics-addr": "metrics-addr", "runtime": "runtime", "cgroup-parent": "cgroup-parent",
		"insecure-registries": "insecure-registry",
	}
}

// parseConfig reads a daemon.json. Unknown keys are refused, all of them
// named, as dockerd does; so is a value of the wrong type or null.
func parseConfig(data []byte) (fileConfig, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fileConfig{}, fmt.Errorf("%w: not a JSON object: %w", drivers.ErrInvalidArgument, err)
	}
	if raw == nil {
		return fileConfig{}, fmt.Errorf("%w: not a JSON object (null)", drivers.ErrInvalidArgument)
	}
	known := configFlags()
	var fc fileConfig
	var unknown []string
	for k, v := range raw {
		if _, ok := known[k]; !ok {
			unknown = append(unknown, k)
			continue
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			return fileConfig{}, fmt.Errorf("%w: %q is null; give a value or leave the key out", drivers.ErrInvalidArgument, k)
		}
		fc.keys = append(fc.keys, k)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fileConfig{}, fmt.Errorf("%w: the following directives don't match any configuration option: %s", drivers.ErrInvalidArgument, strings.Join(unknown, ", "))
	}
	sort.Strings(fc.keys)
	for _, k := range fc.keys {
		if err := json.Unmarshal(raw[k], fc.field(k)); err != nil {
			return fileConfig{}, fmt.Errorf("%w: %q: %s", drivers.ErrInvalidArgument, k, typeError(err))
		}
	}
	// An empty list or map decodes as nil; it still counts as set.
	return fc, nil
}

// field is where key k decodes to.
func (fc *fileConfig) field(k string) any {
	switch k {
	case "hosts":
		return &fc.Hosts
	case "data-root":
		return &fc.DataRoot
	case "exec-root":
		return &fc.ExecRoot
	case "storage-driver":
		return &fc.StorageDriver
	case "storage-drivers":
		return &fc.StorageDrivers
	case "storage-opts":
		return &fc.StorageOpts
	case "debug":
		return &fc.Debug
	case "tls":
		return &fc.TLS
	case "tlsverify":
		return &fc.TLSVerify
	case "tlscacert":
		return &fc.TLSCACert
	case "tlscert":
		return &fc.TLSCert
	case "tlskey":
		return &fc.TLSKey
	case "insecure-tcp":
		return &fc.InsecureTCP
	case "log-driver":
		return &fc.LogDriver
	case "log-opts":
		return &fc.LogOpts
	case "metrics-addr":
		return &fc.MetricsAddr
	case "runtime":
		return &fc.Runtime
	case "cgroup-parent":
		return &fc.CgroupParent
	case "insecure-registries":
		return &fc.Insecure
	}
	panic("daemon.json key without a field: " + k) // configFlags and field disagree
}

// typeError says what a value of the wrong type should have been.
func typeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonKind(te.Type.String()))
	}
	return err.Error()
}

func jsonKind(goType string) string {
	switch goType {
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "map[string]string":
		return "an object of strings"
	}
	return goType
}

// settings are the values the file may set: the flags' variables.
type settings struct {
	hosts, drivers, storageOpts *[]string
	cfg                         *daemon.Config
	remote                      *remoteFlags
}

// loadConfigFile reads path and sets from it what the command line left
// at its default. A key also given as a flag is an error, naming both
// values, as dockerd's; a missing file is an error only when named.
func loadConfigFile(path string, named bool, flags *pflag.FlagSet, s settings) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !named {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--config-file: %w", err)
	}
	fc, err := parseConfig(data)
	if err != nil {
		return fmt.Errorf("unable to configure layerlabd with file %s: %w", path, err)
	}
	var conflicts []string
	for _, k := range fc.keys {
		f := flags.Lookup(configFlags()[k])
		if f != nil && f.Changed {
			v, _ := json.Marshal(fc.field(k))
			conflicts = append(conflicts, fmt.Sprintf("%s: (from flag: %s, from file: %s)", k, f.Value, v))
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("unable to configure layerlabd with file %s: %w: the following directives are specified both as a flag and in the configuration file: %s",
			path, drivers.ErrInvalidArgument, strings.Join(conflicts, ", "))
	}
	fc.apply(s)
	return nil
}

// apply copies the keys the file sets into s.
func (fc fileConfig) apply(s settings) {
	set := func(k string) bool { return slices.Contains(fc.keys, k) }
	str := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	flag := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	if set("hosts") {
		*s.hosts = fc.Hosts
	}
	if set("storage-drivers") {
		*s.drivers = fc.StorageDrivers
	}
	if set("storage-opts") {
		*s.storageOpts = fc.StorageOpts
	}
	if set("insecure-registries") {
		s.cfg.Registries.Insecure = fc.Insecure
	}
	if set("log-opts") {
		s.cfg.LogOpts = fc.LogOpts
	}
	str(&s.cfg.DataRoot, fc.DataRoot)
	str(&s.cfg.ExecRoot, fc.ExecRoot)
	str(&s.cfg.DefaultDriver, fc.StorageDriver)
	str(&s.cfg.LogDriver, fc.LogDriver)
	str(&s.cfg.Runtime, fc.Runtime)
	str(&s.cfg.CgroupParent, fc.CgroupParent)
	str(&s.remote.caFile, fc.TLSCACert)
	str(&s.remote.certFile, fc.TLSCert)
	str(&s.remote.keyFile, fc.TLSKey)
	str(&s.remote.metricsAddr, fc.MetricsAddr)
	flag(&s.cfg.Debug, fc.Debug)
	flag(&s.remote.tls, fc.TLS)
	flag(&s.remote.tlsVerify, fc.TLSVerify)
	flag(&s.remote.insecureTCP, fc.InsecureTCP)
}
