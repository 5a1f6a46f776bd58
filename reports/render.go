// Package reports turns a layerlab results.json (bench/result) into what
// people read: CSV for their own tools, a Markdown and an HTML report with
// hyperfine-like tables, and charts (SVG and PNG) drawn with gonum/plot.
// It also compares two runs (benchstat-like) and merges runs from several
// machines into one.
package reports

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

// Files Render writes into its directory, besides charts/.
const (
	ResultsCSV = "results.csv"
	SummaryCSV = "summary.csv"
	ReportMD   = "report.md"
	IndexHTML  = "index.html"
	ChartsDir  = "charts"
)

// Render writes the whole report for r into dir (created if missing):
// results.csv, summary.csv, report.md, index.html and charts/*.svg|png.
// Both reports open with the findings (findings.go).
// Files from an earlier render are overwritten; stale charts are left.
func Render(r *result.Results, dir string) error {
	if r == nil {
		return errors.New("reports: no results to render (nil)")
	}
	if err := os.MkdirAll(filepath.Join(dir, ChartsDir), 0o755); err != nil {
		return fmt.Errorf("reports: cannot create the report directory: %w", err)
	}
	d := newDataset(r)
	charts, err := renderCharts(d, filepath.Join(dir, ChartsDir))
	if err != nil {
		return err
	}
	f, err := findings(d)
	if err != nil {
		return err
	}
	steps := []struct {
		name  string
		write func(string) error
	}{
		{ResultsCSV, func(p string) error { return writeSamplesCSV(d, p) }},
		{SummaryCSV, func(p string) error { return writeSummaryCSV(d, p) }},
		{ReportMD, func(p string) error { return writeMarkdown(d, charts, f, p) }},
		{IndexHTML, func(p string) error { return writeHTML(d, charts, f, p) }},
	}
	for _, s := range steps {
		if err := s.write(filepath.Join(dir, s.name)); err != nil {
			return fmt.Errorf("reports: writing %s: %w", s.name, err)
		}
	}
	return nil
}

// entry is one series with what every output needs precomputed.
type entry struct {
	*result.Series
	sum     stats.Summary
	label   string // target, plus " (cold)" when caches were dropped
	colorIx int    // index into the palette, stable per target across charts
	machine string // hostname label of Series.Machine
	order   int    // position in Results.Series
}

func (e *entry) cold() bool { return e.Cache == "cold" }

// dataset is Results prepared for rendering: summaries filled in,
// workloads and ops in the order the harness ran them.
type dataset struct {
	r         *result.Results
	entries   []*entry
	workloads []string
	opOrder   map[string]int
	targets   map[string]*result.Target // by ID
	machines  []string                  // labels, index = Series.Machine
}

func newDataset(r *result.Results) *dataset {
	d := &dataset{r: r, opOrder: map[string]int{}, targets: map[string]*result.Target{}}
	d.machines = machineLabels(r.Machines)
	targetIx := map[string]int{}
	for i := range r.Targets {
		t := &r.Targets[i]
		d.targets[t.ID] = t
		if _, ok := targetIx[t.ID]; !ok {
			targetIx[t.ID] = len(targetIx)
		}
	}
	seenWL := map[string]bool{}
	for i := range r.Series {
		s := &r.Series[i]
		if !seenWL[s.Workload] {
			seenWL[s.Workload] = true
			d.workloads = append(d.workloads, s.Workload)
		}
		if _, ok := d.opOrder[s.Workload+"\x00"+s.Op]; !ok {
			d.opOrder[s.Workload+"\x00"+s.Op] = len(d.opOrder)
		}
		// Series naming a target the file does not list still get their own
		// colour after the listed ones.
		if _, ok := targetIx[s.Target]; !ok && !s.Floor {
			targetIx[s.Target] = len(targetIx)
		}
		e := &entry{Series: s, sum: summaryOf(s), label: s.Target, colorIx: targetIx[s.Target], order: i}
		if e.cold() {
			e.label += " (cold)"
		}
		e.machine = d.machineLabel(s.Machine)
		d.entries = append(d.entries, e)
	}
	return d
}

func (d *dataset) machineLabel(i int) string {
	if i >= 0 && i < len(d.machines) {
		return d.machines[i]
	}
	return fmt.Sprintf("machine%d", i)
}

// summaryOf trusts the stored summary when it describes the stored
// samples, and recomputes it otherwise (hand-made or truncated files).
func summaryOf(s *result.Series) stats.Summary {
	if len(s.Samples) == 0 || s.Summary.N == len(s.Samples) {
		return s.Summary
	}
	return stats.Summarize(s.Samples, 1)
}

// machineLabels names machines by hostname, numbering duplicates so each
// label is unique (two VMs cloned from one image share a hostname).
func machineLabels(envs []result.Environment) []string {
	count := map[string]int{}
	base := make([]string, len(envs))
	for i, e := range envs {
		base[i] = e.Hostname
		if base[i] == "" {
			base[i] = "machine"
		}
		count[base[i]]++
	}
	out := make([]string, len(envs))
	for i, b := range base {
		out[i] = b
		if count[b] > 1 {
			out[i] = fmt.Sprintf("%s#%d", b, i+1)
		}
	}
	return out
}

// byWorkload returns the entries of workload w sorted for tables: by op in
// run order, swept value, warm before cold, drivers before floors.
func (d *dataset) byWorkload(w string) []*entry {
	var out []*entry
	for _, e := range d.entries {
		if e.Workload == w {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if oa, ob := d.opOrder[a.Workload+"\x00"+a.Op], d.opOrder[b.Workload+"\x00"+b.Op]; oa != ob {
			return oa < ob
		}
		if a.Param != b.Param {
			return a.Param < b.Param
		}
		if a.Value != b.Value {
			return a.Value < b.Value
		}
		if a.cold() != b.cold() {
			return !a.cold()
		}
		if a.Floor != b.Floor {
			return !a.Floor
		}
		return a.order < b.order
	})
	return out
}

// floorsOf finds the floors measured next to e: same workload, op, swept
// value, cache and machine. A floor's target is "floor:<what>" (for every
// target), "floor:<what>/<target ID>" (for that target only) or
// "floor:<what>/<backing>" (for targets on that filesystem); after a
// merge both sides may carry their machine's "host/" prefix.
func (d *dataset) floorsOf(e *entry) []*entry {
	if e.Floor {
		return nil
	}
	backing := ""
	if t := d.targets[e.Target]; t != nil {
		backing = t.Backing
	}
	base := strings.TrimPrefix(e.Target, e.machine+"/")
	var out []*entry
	for _, f := range d.entries {
		if !f.Floor || f.Workload != e.Workload || f.Op != e.Op || f.Param != e.Param ||
			f.Value != e.Value || f.Cache != e.Cache || f.Machine != e.Machine {
			continue
		}
		rest := strings.TrimPrefix(strings.TrimPrefix(f.Target, "floor:"), f.machine+"/")
		_, spec, scoped := strings.Cut(rest, "/")
		switch {
		case !scoped || spec == base:
			out = append(out, f)
		case d.isTargetID(spec, f.machine):
			// another target's own floor
		case backing != "" && spec[strings.LastIndex(spec, "/")+1:] == backing:
			out = append(out, f)
		}
	}
	return out
}

// isTargetID says whether id names a target (possibly host-prefixed).
func (d *dataset) isTargetID(id, machine string) bool {
	if d.targets[id] != nil || d.targets[machine+"/"+id] != nil {
		return true
	}
	return false
}

// higherIsBetter says which way "fastest" points for a unit.
func higherIsBetter(unit string) bool { return strings.HasSuffix(unit, "/s") }

// sig formats x with about three significant digits, without exponents
// for the magnitudes reports show.
func sig(x float64) string {
	switch a := math.Abs(x); {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "n/a"
	case a >= 1e6:
		return fmt.Sprintf("%.3g", x)
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	case a >= 0.01 || a == 0:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// scale is a display unit: values are divided by div and suffixed.
type scale struct {
	div  float64
	name string
}

// scaleFor picks the display unit for values of unit around ref: ns as
// ns/µs/ms/s, bytes and bytes/s with binary prefixes.
func scaleFor(unit string, ref float64) scale {
	ref = math.Abs(ref)
	switch unit {
	case "ns":
		for _, s := range []scale{{1e9, "s"}, {1e6, "ms"}, {1e3, "µs"}} {
			if ref >= s.div {
				return s
			}
		}
		return scale{1, "ns"}
	case "bytes", "bytes/s":
		suffix := ""
		if unit == "bytes/s" {
			suffix = "/s"
		}
		for _, s := range []scale{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
			if ref >= s.div {
				return scale{s.div, s.name + suffix}
			}
		}
		return scale{1, "B" + suffix}
	case "ratio", "":
		return scale{1, ""}
	}
	return scale{1, unit}
}

// formatValue renders one value of unit for tables: "1.23 ms".
func formatValue(unit string, v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	s := scaleFor(unit, v)
	if s.name == "" {
		return sig(v / s.div)
	}
	return sig(v/s.div) + " " + s.name
}

// formatParam renders a swept value: sizes in bytes, others as numbers.
func formatParam(param string, v float64) string {
	if isSizeParam(param) {
		return formatValue("bytes", v)
	}
	return fmt.Sprintf("%g", v)
}

func isSizeParam(p string) bool {
	p = strings.ToLower(p)
	return p == "size" || strings.HasSuffix(p, "bytes") || strings.HasSuffix(p, "size")
}

// paramLabel is "depth=16" or "" when nothing is swept.
func paramLabel(s *result.Series) string {
	if s.Param == "" {
		return ""
	}
	return s.Param + "=" + formatParam(s.Param, s.Value)
}
