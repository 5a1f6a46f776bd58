// Command layerlab studies container storage drivers: it lists and
// describes them (driver ls, driver info), benchmarks them on loop
// filesystems it makes (bench, bench compare) and renders reports of the
// results (report, report merge), and serves a driver to containerd as a
// proxy snapshotter plugin (snapshotter serve).
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/builtin"
	"github.com/layerlab/layerlab/runtime/executor"
)

func main() {
	// bench's lifecycle workload runs containers with libcontainer in
	// process, which re-executes this binary as their init.
	executor.Init()
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "layerlab:", err)
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for a usage mistake (ErrInvalidArgument: a bad flag or
// option), 128+N for a run interrupted by signal N (its partial report
// written), else 1.
func exitCode(err error) int {
	var sig signalError
	switch {
	case errors.As(err, &sig):
		return sig.ExitCode()
	case errors.Is(err, drivers.ErrInvalidArgument):
		return 2
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "layerlab",
		Short:         "Study container storage drivers: list, probe, benchmark and report them",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// A flag cobra cannot parse (--n abc) is a usage mistake: exit 2.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	})
	root.PersistentFlags().String("data-root", "/var/lib/layerlab", "directory under which each driver keeps its home (DATA-ROOT/DRIVER)")
	reg := builtin.Registry()
	benchCmd := newBenchCmd(reg)
	benchCmd.AddCommand(newCompareCmd())
	root.AddCommand(newDriverCmd(reg), benchCmd, newReportCmd(), newSnapshotterCmd(reg))
	return root
}
