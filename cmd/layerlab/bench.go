package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
			if cmd.Flags().Changed("n") {
				if n < 1 {
					return fmt.Errorf("--n %d: %w: want at least 1 sample per point", n, drivers.ErrInvalidArgument)
				}
				p.N = n
			}
			if workloads != "" {
				p.Workloads = strings.Split(workloads, ",")
			}
			options, err := driverOptions(opts)
			if err != nil {
				return err
			}
			if root != "" {
				if root, err = filepath.Abs(root); err != nil {
					return err
				}
			}
			cfg := bench.Config{
				Registry: reg, Profile: p, Drivers: driverNames, Options: options,
				Root: root, Seed: seed, Version: version, Commit: commit,
			}
			// Everything that can be refused is, before a loop filesystem
			// or the report directory is made.
			if err := cfg.Validate(); err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join(resultsDir, time.Now().Format("20060102-150405"))
			}
			if err := checkOut(out); err != nil {
				return err
			}
			ctx, stop := interruptible(cmd.Context(), cmd.ErrOrStderr())
			defer stop()
			if isTerminal(os.Stderr) {
				cfg.Progress = os.Stderr
			}
			res, runErr := bench.Run(ctx, cfg)
			if res == nil {
				return runErr
			}
			if err := writeReport(res, out); err != nil {
				return errors.Join(runErr, err)
			}
			linkLatest(out)
			what := "report"
			if res.Partial {
				what = "PARTIAL report (interrupted)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "layerlab bench: %d series from %d targets in %s; %s in %s\n",
				len(res.Series), len(res.Targets), res.Finished.Sub(res.Started).Round(time.Second), what, filepath.Join(out, "index.html"))
			for _, note := range res.Notes {
				fmt.Fprintln(cmd.OutOrStdout(), "note:", note)
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "quick", "quick, standard, paper or runtime")
	f.StringSliceVar(&driverNames, "driver", nil, "driver to measure (repeat; default: every driver available here)")
	f.StringArrayVar(&opts, "opt", nil, "driver option as DRIVER:KEY=VALUE (repeat)")
	f.StringVar(&root, "root", "", "run in this existing directory on a real filesystem instead of loop filesystems")
	f.StringVar(&out, "out", "", "report directory (default "+resultsDir+"/<timestamp>, linked from "+resultsDir+"/latest)")
	f.IntVar(&n, "n", 0, "samples per point, at least 1 (default: the profile's)")
	f.StringVar(&workloads, "workloads", "", "comma-separated workloads to run (default: the profile's): "+strings.Join(bench.WorkloadNames(), ", "))
	f.Int64Var(&seed, "seed", 1, "seed for the run order and generated data")
	return cmd
}

func profileList() string {
	var lines []string
	for _, name := range []string{"quick", "standard", "paper", "runtime"} {
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

// resultsDir is where reports go by default: a folder of results, apart
// from the source (git ignores it).
const resultsDir = "results"

// checkOut refuses a report directory that exists and is not an empty
// directory, so a run never mixes its files with another's. The directory
// itself is made only when there is a report to write.
func checkOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("--out %s: %w: %w", out, drivers.ErrInvalidArgument, err)
	case len(entries) > 0:
		return fmt.Errorf("--out %s: %w: it holds files already; give a new or empty directory", out, drivers.ErrInvalidArgument)
	}
	return nil
}

// linkLatest points results/latest at the newest report when it sits in
// the default place.
func linkLatest(out string) {
	if filepath.Dir(filepath.Clean(out)) != resultsDir {
		return
	}
	latest := filepath.Join(resultsDir, "latest")
	os.Remove(latest)
	os.Symlink(filepath.Base(out), latest)
}

// signalError is how an interrupted run ends: the report is written, and
// the exit code is the shell's for that signal (130 for Ctrl-C).
type signalError struct{ sig os.Signal }

func (e signalError) Error() string {
	if s, ok := e.sig.(unix.Signal); ok {
		return "interrupted by " + unix.SignalName(s)
	}
	return "interrupted by " + e.sig.String()
}

// ExitCode is 128 plus the signal number.
func (e signalError) ExitCode() int {
	if s, ok := e.sig.(unix.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// interruptible returns a context cancelled, with a signalError as its
// cause, at the first SIGINT or SIGTERM. Later signals are caught too, so
// the teardown and the partial report are not cut short; stop releases
// the signals.
func interruptible(parent context.Context, log io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, unix.SIGTERM)
	done := make(chan struct{})
	go func() {
		first := true
		for {
			select {
			case sig := <-ch:
				if first {
					fmt.Fprintf(log, "\nlayerlab bench: %v: tearing down and writing what was measured (partial report)\n", sig)
					cancel(signalError{sig})
					first = false
				} else {
					fmt.Fprintf(log, "layerlab bench: %v: still tearing down, please wait\n", sig)
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(nil)
	}
}

// writeReport makes out and writes results.json and, through package
// reports, the rest.
func writeReport(res *result.Results, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	if err := res.Save(filepath.Join(out, "results.json")); err != nil {
		return err
	}
	return reports.Render(res, out)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
