package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/bench"
	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/reports"
)

// version and commit are set by the Makefile through -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
)

func newBenchCmd(reg *drivers.Registry) *cobra.Command {
	var (
		profile, root, out, workloads string
		driverNames, opts             []string
		n                             int
		seed                          int64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark the storage drivers and write a report (results.json, results.csv, report.md, index.html, charts)",
		Long: `bench runs a profile of workloads against every driver available here
(or those named with --driver). Without --root it makes a loop-backed
filesystem per driver and backing (ext4 and xfs for vfs/overlay/overlay2,
btrfs, a zfs pool) in a scratch directory and removes them afterwards.

Profiles: ` + profileList(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := bench.ProfileNamed(profile)
			if err != nil {
				return err
			}
			if n > 0 {
				p.N = n
			}
			if workloads != "" {
				p.Workloads = strings.Split(workloads, ",")
			}
			options, err := driverOptions(opts)
			if err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join("reports", time.Now().Format("20060102-150405"))
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
			defer stop()
			cfg := bench.Config{
				Registry: reg, Profile: p, Drivers: driverNames, Options: options,
				Root: root, Seed: seed, Version: version, Commit: commit,
			}
			if isTerminal(os.Stderr) {
				cfg.Progress = os.Stderr
			}
			res, runErr := bench.Run(ctx, cfg)
			if res == nil {
				return runErr
			}
			if err := writeReport(res, out); err != nil {
				return err
			}
			linkLatest(out)
			fmt.Fprintf(cmd.OutOrStdout(), "layerlab bench: %d series from %d targets in %s; report in %s\n",
				len(res.Series), len(res.Targets), res.Finished.Sub(res.Started).Round(time.Second), filepath.Join(out, "index.html"))
			for _, note := range res.Notes {
				fmt.Fprintln(cmd.OutOrStdout(), "note:", note)
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "quick", "quick, standard or paper")
	f.StringSliceVar(&driverNames, "driver", nil, "driver to measure (repeat; default: every driver available here)")
	f.StringArrayVar(&opts, "opt", nil, "driver option as DRIVER:KEY=VALUE (repeat)")
	f.StringVar(&root, "root", "", "run in this directory on a real filesystem instead of loop filesystems")
	f.StringVar(&out, "out", "", "report directory (default reports/<timestamp>, linked from reports/latest)")
	f.IntVar(&n, "n", 0, "samples per point (default: the profile's)")
	f.StringVar(&workloads, "workloads", "", "comma-separated workloads to run (default: the profile's): "+strings.Join(bench.WorkloadNames(), ", "))
	f.Int64Var(&seed, "seed", 1, "seed for the run order and generated data")
	return cmd
}

func profileList() string {
	var lines []string
	for _, name := range []string{"quick", "standard", "paper"} {
		p, _ := bench.ProfileNamed(name)
		lines = append(lines, name+" ("+p.Description+")")
	}
	return strings.Join(lines, "; ")
}

// driverOptions parses DRIVER:KEY=VALUE flags.
func driverOptions(flags []string) (map[string]drivers.Options, error) {
	out := map[string]drivers.Options{}
	for _, f := range flags {
		name, kv, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("--opt %q: %w: want DRIVER:KEY=VALUE", f, drivers.ErrInvalidArgument)
		}
		o, err := drivers.ParseOptions([]string{kv})
		if err != nil {
			return nil, err
		}
		if out[name] == nil {
			out[name] = drivers.Options{}
		}
		for k, v := range o {
			out[name][k] = v
		}
	}
	return out, nil
}

// linkLatest points reports/latest at the newest report when it sits in
// the default place.
func linkLatest(out string) {
	if filepath.Dir(filepath.Clean(out)) != "reports" {
		return
	}
	latest := filepath.Join("reports", "latest")
	os.Remove(latest)
	os.Symlink(filepath.Base(out), latest)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// writeReport writes results.json and, through package reports, the rest.
func writeReport(res *result.Results, out string) error {
	if err := res.Save(filepath.Join(out, "results.json")); err != nil {
		return err
	}
	return reports.Render(res, out)
}
