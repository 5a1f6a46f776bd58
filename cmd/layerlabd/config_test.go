package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/daemon"
)

const sampleConfig = `{
  "hosts": ["unix:///run/l.sock", "tcp://127.0.0.1:2376"],
  "data-root": "/srv/layerlab", "exec-root": "/run/ll",
  "storage-driver": "btrfs", "storage-drivers": ["vfs"], "storage-opts": ["btrfs.home=/mnt/b"],
  "debug": true, "tls": true, "tlsverify": true,
  "tlscacert": "/etc/l/ca.pem", "tlscert": "/etc/l/cert.pem", "tlskey": "/etc/l/key.pem",
  "log-driver": "syslog", "log-opts": {"tag": "x"},
  "metrics-addr": "127.0.0.1:9323", "runtime": "runc", "cgroup-parent": "/ll",
  "insecure-registries": ["reg.lan:5000", "10.0.0.0/8"]
}`

func TestParseConfig(t *testing.T) {
	fc, err := parseConfig([]byte(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		hosts, drivers, opts []string
		cfg                  daemon.Config
		r                    remoteFlags
	}
	fc.apply(settings{hosts: &s.hosts, drivers: &s.drivers, storageOpts: &s.opts, cfg: &s.cfg, remote: &s.r})
	c, r := s.cfg, s.r
	if len(s.hosts) != 2 || s.drivers[0] != "vfs" || s.opts[0] != "btrfs.home=/mnt/b" || c.DataRoot != "/srv/layerlab" || c.ExecRoot != "/run/ll" ||
		c.DefaultDriver != "btrfs" || !c.Debug || !r.tls || !r.tlsVerify || r.caFile != "/etc/l/ca.pem" || r.certFile != "/etc/l/cert.pem" ||
		r.keyFile != "/etc/l/key.pem" || c.LogDriver != "syslog" || c.LogOpts["tag"] != "x" || r.metricsAddr != "127.0.0.1:9323" ||
		c.Runtime != "runc" || c.CgroupParent != "/ll" || !reflect.DeepEqual(c.Registries.Insecure, []string{"reg.lan:5000", "10.0.0.0/8"}) {
		t.Fatalf("applied: %+v", s)
	}
	for _, c := range []struct{ json, want string }{
		{`{"debug": true, "nosuch": 1, "graph": "/x"}`, "don't match any configuration option: graph, nosuch"},
		{`{"debug": "yes"}`, `"debug": got a JSON string, want true or false`},
		{`{"hosts": "tcp://x"}`, `"hosts": got a JSON string, want a list of strings`},
		{`{"insecure-registries": "reg:5000"}`, `"insecure-registries": got a JSON string, want a list of strings`},
		{`{"log-opts": {"a": 1}}`, `"log-opts": got a JSON number, want a string`},
		{`{"data-root": null}`, `"data-root" is null`},
		{`[1]`, "not a JSON object"},
		{`null`, "not a JSON object"},
		{`{"debug": true`, "not a JSON object"},
	} {
		if _, err := parseConfig([]byte(c.json)); !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseConfig(%s): %v, want invalid argument saying %q", c.json, err, c.want)
		}
	}
}

// TestLoadConfigFile: the file fills what the flags left; a key given
// both ways is refused with both values; a missing default file is fine,
// a missing named one is not.
func TestLoadConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(path, []byte(`{"debug": true, "tlsverify": true, "data-root": "/srv/l"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func(named bool, file string, args ...string) (daemon.Config, remoteFlags, error) {
		cmd := newRoot()
		if err := cmd.Flags().Parse(args); err != nil {
			t.Fatal(err)
		}
		var hosts, drv, opts []string
		var cfg daemon.Config
		var r remoteFlags
		err := loadConfigFile(file, named, cmd.Flags(), settings{hosts: &hosts, drivers: &drv, storageOpts: &opts, cfg: &cfg, remote: &r})
		return cfg, r, err
	}
	cfg, r, err := load(true, path, "--storage-driver", "vfs")
	if err != nil || !cfg.Debug || !r.tlsVerify || cfg.DataRoot != "/srv/l" {
		t.Fatalf("load: %+v %+v %v", cfg, r, err)
	}
	_, _, err = load(true, path, "-D", "--data-root", "/other")
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "specified both as a flag and in the configuration file: data-root: (from flag: /other, from file: \"/srv/l\"), debug: (from flag: true, from file: true)") {
		t.Fatalf("conflict: %v", err)
	}
	if _, _, err := load(false, filepath.Join(dir, "none.json")); err != nil {
		t.Fatalf("a missing default file: %v", err)
	}
	if _, _, err := load(true, filepath.Join(dir, "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing named file: %v, want not exist", err)
	}
}

// FuzzConfigFile: any input parses or is refused as invalid, never
// panics; what parses sets only keys that stand for a flag, and encodes
// back to a file that parses the same.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte(sampleConfig))
	for _, s := range []string{`{}`, `{"debug":true,"debug":false}`, `{"log-opts":{}}`, `{"hosts":[]}`, `{"nosuch":1}`, `{"tls":1}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := parseConfig(data)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("parseConfig(%q): %v, not an invalid argument", data, err)
			}
			return
		}
		out := map[string]any{}
		for _, k := range fc.keys {
			if configFlags()[k] == "" {
				t.Fatalf("key %q stands for no flag", k)
			}
			out[k] = fc.field(k)
		}
		enc, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseConfig(enc)
		if err != nil {
			t.Fatalf("%s parsed, its encoding %s does not: %v", data, enc, err)
		}
		if !reflect.DeepEqual(normalize(fc), normalize(again)) {
			t.Fatalf("%s parsed as %+v, its encoding %s as %+v", data, fc, enc, again)
		}
	})
}

// normalize makes empty lists and maps nil: JSON [] and {} decode so.
func normalize(fc fileConfig) fileConfig {
	for _, l := range []*[]string{&fc.Hosts, &fc.StorageDrivers, &fc.StorageOpts} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(fc.LogOpts) == 0 {
		fc.LogOpts = nil
	}
	return fc
}
