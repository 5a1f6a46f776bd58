package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/reports"
)

// newReportCmd is `layerlab report DIR|results.json [--out DIR]` and
// `layerlab report merge DIR... --out DIR` (merge.go).
func newReportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "report DIR|results.json",
		Short: "Render a results.json as CSV, Markdown, HTML and charts (next to it unless --out)",
		Long: `Render a benchmark result: results.csv (every sample), summary.csv,
report.md, index.html and charts/*.svg|png. DIR means DIR/results.json.
Without --out the report is written next to the input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := resultsPath(args[0])
			if err != nil {
				return err
			}
			r, err := result.Load(path)
			if err != nil {
				return err
			}
			dir := out
			if dir == "" {
				dir = filepath.Dir(path)
			}
			if err := reports.Render(r, dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report written to %s (open %s)\n", dir, filepath.Join(dir, reports.IndexHTML))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the report into (default: the input's directory)")
	cmd.AddCommand(newReportMergeCmd())
	return cmd
}

// newCompareCmd is `layerlab bench compare A.json B.json`, benchstat-like:
// for every series in both runs, old and new median, new/old, the
// Mann-Whitney p-value and the change, "~" when not significant.
func newCompareCmd() *cobra.Command {
	var (
		alpha  float64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "compare OLD.json NEW.json",
		Short: "Compare two benchmark results: median change per series and whether it is significant (Mann-Whitney U)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !(alpha > 0 && alpha < 1) {
				return fmt.Errorf("--alpha %g: must be between 0 and 1 (exclusive), e.g. 0.05", alpha)
			}
			var rs [2]*result.Results
			for i, a := range args {
				p, err := resultsPath(a)
				if err != nil {
					return err
				}
				if rs[i], err = result.Load(p); err != nil {
					return err
				}
			}
			rows := reports.Compare(rs[0], rs[1], alpha)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if rows == nil {
					rows = []reports.Row{}
				}
				return enc.Encode(rows)
			}
			if err := reports.WriteCompare(cmd.OutOrStdout(), rows, alpha, args[0], args[1]); err != nil {
				return err
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "\n"+reports.CompareSummary(rows))
			return err
		},
	}
	cmd.Flags().Float64Var(&alpha, "alpha", 0.05, "significance level: a change with p ≥ alpha is shown as ~")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the rows as JSON")
	return cmd
}

// resultsPath accepts a results.json or the directory holding one.
func resultsPath(arg string) (string, error) {
	fi, err := os.Stat(arg)
	if err != nil {
		return "", fmt.Errorf("%s: %w (give a results.json or the directory holding it)", arg, err)
	}
	if fi.IsDir() {
		p := filepath.Join(arg, "results.json")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s is a directory without results.json: give the results file or the directory `layerlab bench` wrote", arg)
		}
		return p, nil
	}
	return arg, nil
}
