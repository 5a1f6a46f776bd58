package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/reports"
)

// newReportMergeCmd is `layerlab report merge DIR|results.json... --out
// DIR`, and the older `layerlab report merge OUT_DIR A.json B.json ...`.
func newReportMergeCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "merge DIR|results.json... --out DIR",
		Short: "Merge the results of several machines (a cluster's nodes, VMs) into one report",
		Long: `Merge results from several machines into OUT/results.json and render the
report there (HTML, Markdown, CSV, charts). An input is a results.json, the
directory layerlab bench --out wrote, or a directory of such directories
(one per node, as deploy/kubernetes/collect.sh copies them).

Every series keeps its machine: the CSV files' machine column and the
report's tables name its hostname, and a target measured on more than one
machine is prefixed with the hostname (node1/overlay2/ext4), so each node's
series stay apart in every table and chart.

Refused with exit code 2: an input of another results schema (written by
another layerlab release), a directory without results, the same run given
twice, and an --out that holds one of the inputs.
The older form without --out, "merge OUT_DIR A.json B.json ...", still works.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inputs := args
			if out == "" {
				if len(args) < 3 {
					return fmt.Errorf("report merge: %w: give the inputs and --out DIR: layerlab report merge node1/ node2/ --out merged/", drivers.ErrInvalidArgument)
				}
				out, inputs = args[0], args[1:]
			}
			if len(inputs) == 0 {
				return fmt.Errorf("report merge: %w: no inputs: give results directories or results.json files before --out", drivers.ErrInvalidArgument)
			}
			return mergeReports(cmd, inputs, out)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the merged results.json and report into")
	return cmd
}

func mergeReports(cmd *cobra.Command, inputs []string, outDir string) error {
	outAbs, err := filepath.Abs(outDir)
	if err != nil {
		return err
	}
	var paths []string
	for _, in := range inputs {
		ps, err := mergeInputs(in, outAbs)
		if err != nil {
			return err
		}
		paths = append(paths, ps...)
	}
	var rs []*result.Results
	seenPath := map[string]string{}
	seenRun := map[string]string{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		// Writing over an input would destroy it before anyone noticed
		// the merge was wrong.
		if abs == filepath.Join(outAbs, "results.json") {
			return fmt.Errorf("report merge: %w: --out %s holds input %s, which the merged results would overwrite; choose another --out", drivers.ErrInvalidArgument, outDir, p)
		}
		if first, ok := seenPath[abs]; ok {
			return fmt.Errorf("report merge: %w: %s is given twice (also as %s)", drivers.ErrInvalidArgument, p, first)
		}
		seenPath[abs] = p
		r, err := result.Load(p)
		var pathErr *fs.PathError
		switch {
		case errors.As(err, &pathErr):
			return fmt.Errorf("report merge: %w", err)
		case err != nil:
			return fmt.Errorf("report merge: %w: %w; merge only results written by this layerlab release (re-run the bench, or merge with the release that wrote them)", drivers.ErrInvalidArgument, err)
		}
		// A node's report copied twice (two collections of one run) would
		// count its samples twice.
		if id := runID(r); id != "" {
			if first, ok := seenRun[id]; ok {
				return fmt.Errorf("report merge: %w: %s and %s are the same run (same machines and start time); give each run once", drivers.ErrInvalidArgument, first, p)
			}
			seenRun[id] = p
		}
		rs = append(rs, r)
	}
	merged, err := reports.Merge(rs...)
	if err != nil {
		return fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return fmt.Errorf("report merge: cannot create %s: %w", outDir, err)
	}
	outPath := filepath.Join(outDir, "results.json")
	if err := merged.Save(outPath); err != nil {
		return fmt.Errorf("report merge: writing %s: %w", outPath, err)
	}
	if err := reports.Render(merged, outDir); err != nil {
		return err
	}
	var hosts []string
	for _, m := range merged.Machines {
		hosts = append(hosts, m.Hostname)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "merged %d results (%d machines: %s) into %s; report in %s\n",
		len(rs), len(merged.Machines), strings.Join(hosts, ", "), outPath, filepath.Join(outDir, reports.IndexHTML))
	return nil
}

// mergeInputs resolves one argument of merge to results files: the file
// itself, DIR/results.json, or DIR/*/results.json for a directory of
// per-node report directories (in name order; symlinks such as
// results/latest and the merge's own --out are skipped, as they would
// repeat an input).
func mergeInputs(arg, outAbs string) ([]string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return nil, fmt.Errorf("report merge: %w: %w (give a results.json, the directory layerlab bench wrote, or a directory of those)", drivers.ErrInvalidArgument, err)
	}
	if !fi.IsDir() {
		return []string{arg}, nil
	}
	own := filepath.Join(arg, "results.json")
	if _, err := os.Stat(own); err == nil {
		return []string{own}, nil
	}
	entries, err := os.ReadDir(arg)
	if err != nil {
		return nil, fmt.Errorf("report merge: %w", err)
	}
	var found []string
	for _, e := range entries {
		sub := filepath.Join(arg, e.Name())
		if !e.IsDir() || e.Type()&fs.ModeSymlink != 0 {
			continue
		}
		if abs, err := filepath.Abs(sub); err == nil && abs == outAbs {
			continue
		}
		if _, err := os.Stat(filepath.Join(sub, "results.json")); err == nil {
			found = append(found, filepath.Join(sub, "results.json"))
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("report merge: %w: %s holds no results.json, nor do its subdirectories: give the directory layerlab bench --out wrote (one per node), or a directory of those", drivers.ErrInvalidArgument, arg)
	}
	sort.Strings(found)
	return found, nil
}

// runID identifies a run by its start and its machines' hostnames and
// capture dates, which two different runs never share.
func runID(r *result.Results) string {
	if r.Started.IsZero() || len(r.Machines) == 0 {
		return ""
	}
	id := r.Started.UTC().String()
	for _, m := range r.Machines {
		id += "|" + m.Hostname + "@" + m.Date.UTC().String()
	}
	return id
}
