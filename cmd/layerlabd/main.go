// Command layerlabd is layerlab's container runtime daemon: it serves the
// Docker Engine API (1.41) on a unix socket so the docker CLI and
// docker-py drive it, with any of layerlab's storage drivers. This file
// holds the flags and the wiring only; the work is in runtime/.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/runtime/daemon"
	"github.com/layerlab/layerlab/runtime/executor"
	"github.com/layerlab/layerlab/runtime/registry"
)

// Set by the Makefile (-ldflags -X).
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	// libcontainer re-executes this binary as a container's init.
	executor.Init()
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "layerlabd:", err)
		if errors.Is(err, drivers.ErrInvalidArgument) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var (
		hosts    []string
		cfg      daemon.Config
		enabled  []string
		optFlags []string
		logOpts  []string
		remote   remoteFlags
		cfgFile  string
		// userlandProxy is dockerd's flag; the daemon takes its opposite.
		userlandProxy bool
	)
	cmd := &cobra.Command{
		Use:           "layerlabd",
		Short:         "Serve the Docker Engine API (1.41) with layerlab's storage drivers",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version + " (" + commit + ")",
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := loadConfigFile(cfgFile, cmd.Flags().Changed("config-file"), cmd.Flags(),
				settings{hosts: &hosts, drivers: &enabled, storageOpts: &optFlags, cfg: &cfg, remote: &remote})
			if err != nil {
				return err
			}
			cfg.Registry = builtin.Registry()
			cfg.Version, cfg.Commit = version, commit
			cfg.Drivers = enabled
			cfg.NATPorts = !userlandProxy
			opts, err := storageOptions(cfg.Registry, optFlags)
			if err != nil {
				return err
			}
			cfg.Options = opts
			// daemon.json's log-opts stand unless --log-opt is given
			// (loadConfigFile refuses both at once).
			if cmd.Flags().Changed("log-opt") {
				if cfg.LogOpts, err = logOptions(logOpts); err != nil {
					return err
				}
			}
			return serve(cmd.Context(), cfg, hosts, remote)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	})
	f := cmd.Flags()
	f.StringArrayVarP(&hosts, "host", "H", []string{"unix:///run/layerlab/layerlab.sock"}, "where to serve the API (repeatable): unix:///path.sock or tcp://HOST[:PORT] (2376 with TLS, 2375 without)")
	f.StringVar(&cfg.DataRoot, "data-root", "/var/lib/layerlab", "root of the daemon's state: images, driver homes, layerlabd.db")
	f.StringVar(&cfg.ExecRoot, "exec-root", "/run/layerlab", "root of the daemon's runtime state")
	f.StringVar(&cfg.DefaultDriver, "storage-driver", "overlay2", "default storage driver")
	f.StringSliceVar(&enabled, "storage-drivers", nil, "storage drivers to open, each in DATA-ROOT/NAME (the default driver is always opened)")
	f.StringArrayVar(&optFlags, "storage-opt", nil, "driver option as DRIVER.KEY=VALUE (repeatable), e.g. overlay2.size=10G or btrfs.home=/mnt/btrfs")
	f.BoolVarP(&cfg.Debug, "debug", "D", false, "log every API call (method, path, status, duration, remote) to stderr")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "/layerlab", "parent cgroup of the containers' cgroups, in every hierarchy")
	f.StringVar(&cfg.LogDriver, "log-driver", "json-file", "default log driver of new containers: json-file, local, syslog, fluentd or none")
	f.StringArrayVar(&logOpts, "log-opt", nil, "default log driver option as KEY=VALUE (repeatable), e.g. max-size=10m")
	f.StringVar(&cfg.Runtime, "runtime", "libcontainer", "how containers run: libcontainer (in process) or runc (the runc binary)")
	f.BoolVar(&userlandProxy, "userland-proxy", true, "publish ports through a proxy in the daemon; false: nftables DNAT rules in the daemon's network namespace")
	f.StringVar(&cfg.Bridge, "bridge", daemon.DefaultBridge, "Linux bridge of the default bridge network; none: no default bridge, containers get network none by default")
	f.StringVar(&cfgFile, "config-file", defaultConfigFile, "daemon.json with dockerd's keys for these options (a key may not also be a flag)")
	certs := defaultCertPath()
	f.BoolVar(&remote.tls, "tls", false, "serve tcp:// with TLS (implied by --tlsverify, which tcp needs: clients must show a certificate --tlscacert signed)")
	f.BoolVar(&remote.tlsVerify, "tlsverify", false, "serve tcp:// with TLS 1.2+ and require client certificates signed by --tlscacert")
	f.StringVar(&remote.caFile, "tlscacert", certs+"/ca.pem", "trust client certificates signed only by this CA")
	f.StringVar(&remote.certFile, "tlscert", certs+"/cert.pem", "the server's TLS certificate")
	f.StringVar(&remote.keyFile, "tlskey", certs+"/key.pem", "the server's TLS key")
	f.BoolVar(&remote.insecureTCP, "insecure-tcp", false, "allow tcp:// without TLS: anyone who reaches it has root here")
	f.StringArrayVar(&cfg.Registries.Insecure, "insecure-registry", nil, "a registry (HOST[:PORT] or CIDR, repeatable) reached over plain http or with any certificate; loopback registries always are")
	f.StringVar(&cfg.Registries.CertsDir, "registry-certs-dir", registry.DefaultCertsDir, "per-registry CA certificates: DIR/HOST[:PORT]/*.crt (and client.cert/client.key)")
	f.StringVar(&remote.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on HOST:PORT over plain http, e.g. 127.0.0.1:9323")
	return cmd
}

// storageOptions parses dockerd-style DRIVER.KEY=VALUE options and checks
// them against each driver before anything is opened; KEY "home" is the
// daemon's (where the driver's home is), not the driver's.
func storageOptions(reg *drivers.Registry, flags []string) (map[string]drivers.Options, error) {
	out := map[string]drivers.Options{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		name, key, dotted := strings.Cut(k, ".")
		if !ok || !dotted || name == "" || key == "" {
			return nil, fmt.Errorf("--storage-opt %q: %w: want DRIVER.KEY=VALUE, e.g. overlay2.size=10G", kv, drivers.ErrInvalidArgument)
		}
		if out[name] == nil {
			out[name] = drivers.Options{}
		}
		out[name][key] = v
	}
	for name, o := range out {
		check := drivers.Options{}
		for k, v := range o {
			if k != "home" {
				check[k] = v
			}
		}
		if err := reg.CheckOptions(name, check); err != nil {
			return nil, fmt.Errorf("--storage-opt: %w", err)
		}
	}
	return out, nil
}

// logOptions parses dockerd-style --log-opt KEY=VALUE flags; the daemon
// checks them against the driver.
func logOptions(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range flags {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--log-opt %q: %w: want KEY=VALUE, e.g. max-size=10m", kv, drivers.ErrInvalidArgument)
		}
		out[k] = v
	}
	return out, nil
}
