package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layerlab/layerlab/drivers"
)

// driverReport is what `driver ls` and `driver info` print for one driver.
type driverReport struct {
	Name         string               `json:"name"`
	Summary      string               `json:"summary"`
	Home         string               `json:"home"`
	Available    bool                 `json:"available"`
	Reason       string               `json:"reason,omitempty"`
	Capabilities drivers.Capabilities `json:"capabilities"`
	Facts        []drivers.Fact       `json:"facts"`
}

func report(f drivers.Factory, root string) driverReport {
	home := filepath.Join(root, f.Name)
	p := f.Probe(home)
	return driverReport{
		Name: f.Name, Summary: f.Summary, Home: home,
		Available: p.Available(), Reason: p.Reason,
		Capabilities: f.Capabilities, Facts: p.Facts,
	}
}

func newDriverCmd(reg *drivers.Registry) *cobra.Command {
	cmd := &cobra.Command{Use: "driver", Short: "List and describe storage drivers"}
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List every driver: strategy, granularity, quota, and whether it runs here (or why not)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			root, _ := cmd.Flags().GetString("data-root")
			var reports []driverReport
			for _, name := range reg.Names() {
				f, _ := reg.Get(name)
				reports = append(reports, report(f, root))
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), reports)
			}
			printTable(cmd.OutOrStdout(), reports)
			return nil
		},
	}
	info := &cobra.Command{
		Use:   "info NAME",
		Short: "Describe one driver and the kernel facts its probe found",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := reg.Get(args[0])
			if err != nil {
				return err
			}
			root, _ := cmd.Flags().GetString("data-root")
			r := report(f, root)
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), r)
			}
			printInfo(cmd.OutOrStdout(), r)
			return nil
		},
	}
	for _, c := range []*cobra.Command{ls, info} {
		c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	}
	cmd.AddCommand(ls, info)
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func quota(c drivers.Capabilities) string {
	if c.Quota {
		return "yes"
	}
	return "no"
}

func printTable(w io.Writer, reports []driverReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTRATEGY\tGRANULARITY\tQUOTA\tAVAILABLE HERE")
	for _, r := range reports {
		avail := "yes"
		if !r.Available {
			avail = "no: " + r.Reason
		}
		c := r.Capabilities
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, c.Strategy, c.Granularity, quota(c), avail)
	}
	tw.Flush()
}

func printInfo(w io.Writer, r driverReport) {
	c := r.Capabilities
	fmt.Fprintf(w, "%s: %s\n\n", r.Name, r.Summary)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "strategy\t%s\n", c.Strategy)
	fmt.Fprintf(tw, "granularity\t%s\n", c.Granularity)
	fmt.Fprintf(tw, "quota\t%s: %s\n", quota(c), c.QuotaNote)
	fmt.Fprintf(tw, "needs\t%s\n", strings.Join(c.Kernel, "; "))
	if c.MaxDepth > 0 {
		fmt.Fprintf(tw, "max depth\t%d layers\n", c.MaxDepth)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(tw, "note\t%s\n", n)
	}
	fmt.Fprintf(tw, "home\t%s\n", r.Home)
	if r.Available {
		fmt.Fprintf(tw, "available here\tyes\n")
	} else {
		fmt.Fprintf(tw, "available here\tno: %s\n", r.Reason)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nprobed:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range r.Facts {
		fmt.Fprintf(tw, "  %s\t%s\n", f.Name, f.Value)
	}
	tw.Flush()
}
