package reports

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
)

// tableRow is one line of a hyperfine-like table, already formatted; the
// Markdown and HTML reports print the same rows.
type tableRow struct {
	Target, Op, Param, N        string
	Median, Mean, P95, P99, Max string
	Relative                    string
	Floor, Cold, Best           bool
}

// workloadTable is the table and charts of one workload.
type workloadTable struct {
	Workload string
	Rows     []tableRow
	Charts   []chartFile
}

// tables builds one table per workload. "relative" compares each driver
// with the best median among drivers measuring the same thing (op, swept
// value, cache); floors are left out of that race and instead each driver
// is also given as a multiple of its floor.
func tables(d *dataset, charts []chartFile) []workloadTable {
	var out []workloadTable
	for _, w := range d.workloads {
		entries := d.byWorkload(w)
		best := map[string]float64{}
		for _, e := range entries {
			m := e.sum.P50
			if e.Floor || !(m > 0) || math.IsInf(m, 0) {
				continue
			}
			k := groupKey(e)
			if b, ok := best[k]; !ok || better(e.Unit, m, b) {
				best[k] = m
			}
		}
		wt := workloadTable{Workload: w}
		for _, e := range entries {
			wt.Rows = append(wt.Rows, row(d, e, best[groupKey(e)]))
		}
		for _, c := range charts {
			if c.Workload == w {
				wt.Charts = append(wt.Charts, c)
			}
		}
		out = append(out, wt)
	}
	return out
}

func groupKey(e *entry) string {
	return fmt.Sprintf("%s|%s=%g|%s|%s", e.Op, e.Param, e.Value, e.Cache, e.Unit)
}

func better(unit string, a, b float64) bool {
	if higherIsBetter(unit) {
		return a > b
	}
	return a < b
}

// relativeTo is how many times worse m is than ref (≥ 1 when ref is best).
func relativeTo(unit string, m, ref float64) float64 {
	if higherIsBetter(unit) {
		return ref / m
	}
	return m / ref
}

func row(d *dataset, e *entry, best float64) tableRow {
	s := e.sum
	u := e.Unit
	r := tableRow{
		Target: e.Target, Op: e.Op, Param: paramLabel(e.Series), N: fmt.Sprint(s.N),
		Median: fmt.Sprintf("%s [%s, %s]", formatValue(u, s.P50), formatValue(u, s.CILow), formatValue(u, s.CIHigh)),
		Mean:   fmt.Sprintf("%s ± %s", formatValue(u, s.Mean), formatValue(u, s.Stddev)),
		P95:    formatValue(u, s.P95), P99: formatValue(u, s.P99), Max: formatValue(u, s.Max),
		Floor: e.Floor, Cold: e.cold(),
	}
	if r.Cold {
		r.Target += " (cold)"
	}
	r.Target += d.machineSuffix(e)
	switch {
	case e.Floor:
		r.Relative = "floor"
	case best > 0 && s.P50 > 0:
		rel := relativeTo(u, s.P50, best)
		r.Best = rel == 1
		r.Relative = fmt.Sprintf("%.2f", rel)
	default:
		r.Relative = "n/a"
	}
	var vs []string
	for _, f := range d.floorsOf(e) {
		if f.sum.P50 > 0 && s.P50 > 0 {
			vs = append(vs, fmt.Sprintf("%.2f× %s", relativeTo(u, s.P50, f.sum.P50), f.Target))
		}
	}
	if len(vs) > 0 {
		r.Relative += " (" + strings.Join(vs, ", ") + ")"
	}
	return r
}

func mdHeader() []string {
	return []string{"target", "op", "param", "n", "median [95% CI]", "mean ± σ", "p95", "p99", "max", "relative"}
}

func (r tableRow) cells() []string {
	return []string{r.Target, r.Op, r.Param, r.N, r.Median, r.Mean, r.P95, r.P99, r.Max, r.Relative}
}

// mdEscape keeps a cell from breaking the table.
func mdEscape(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func mdTable(b *strings.Builder, header []string, rows [][]string) {
	b.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = mdEscape(c)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
}

func writeMarkdown(d *dataset, charts []chartFile, f findingsReport, path string) error {
	var b strings.Builder
	r := d.r
	b.WriteString("# layerlab benchmark report\n\n")
	mdFindings(&b, f)
	b.WriteString("\n## Run\n\n")
	for _, l := range headline(r) {
		b.WriteString("- " + mdEscape(l) + "\n")
	}
	b.WriteString("\nMedians carry a 95% bootstrap confidence interval. `relative` is the ratio to the best median among drivers measuring the same op, swept value and cache state (1.00 = best); `(N× floor:…)` is the same ratio against each floor measured alongside (>1 = worse than the floor).\n")
	for _, wt := range tables(d, charts) {
		fmt.Fprintf(&b, "\n## %s\n\n", mdEscape(wt.Workload))
		var rows [][]string
		for _, row := range wt.Rows {
			c := row.cells()
			if row.Best {
				c[9] = "**1.00**" + strings.TrimPrefix(c[9], "1.00")
			}
			rows = append(rows, c)
		}
		mdTable(&b, mdHeader(), rows)
		if len(wt.Charts) > 0 {
			b.WriteString("\n")
		}
		for _, c := range wt.Charts {
			fmt.Fprintf(&b, "![%s](%s) ([PNG](%s))\n\n", mdEscape(c.Title), c.SVG, c.PNG)
		}
	}
	b.WriteString("\n## Environment\n\n")
	mdTable(&b, envHeader(), envRows(d))
	b.WriteString("\n## Targets\n\n")
	mdTable(&b, targetHeader(), targetRows(d))
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			b.WriteString("- " + mdEscape(n) + "\n")
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// headline is the run's identity: profile, when, how much.
func headline(r *result.Results) []string {
	var out []string
	if r.Profile != "" {
		out = append(out, "profile: "+r.Profile)
	}
	if !r.Started.IsZero() {
		l := "started: " + r.Started.UTC().Format(time.RFC3339)
		if !r.Finished.IsZero() {
			l += ", finished: " + r.Finished.UTC().Format(time.RFC3339) +
				" (" + r.Finished.Sub(r.Started).Round(time.Second).String() + ")"
		}
		out = append(out, l)
	}
	samples := 0
	for _, s := range r.Series {
		samples += len(s.Samples)
	}
	out = append(out, fmt.Sprintf("%d series, %d samples, %d targets, %d machine(s)",
		len(r.Series), samples, len(r.Targets), len(r.Machines)))
	return out
}

func envHeader() []string {
	return []string{"machine", "kernel", "CPU", "memory", "Go", "layerlab", "commit", "date", "harness overhead / sample"}
}

func envRows(d *dataset) [][]string {
	var rows [][]string
	for i, m := range d.r.Machines {
		date := ""
		if !m.Date.IsZero() {
			date = m.Date.UTC().Format(time.RFC3339)
		}
		cpu := m.CPU
		if m.CPUs > 0 {
			cpu = fmt.Sprintf("%s (%d CPUs)", m.CPU, m.CPUs)
		}
		rows = append(rows, []string{d.machines[i], m.Kernel, cpu, formatValue("bytes", float64(m.MemoryBytes)),
			m.GoVersion, m.LayerlabVersion, m.Commit, date, formatValue("ns", m.OverheadNs)})
	}
	return rows
}

func targetHeader() []string {
	return []string{"target", "machine", "driver", "backing", "device", "loop", "direct I/O", "mount options", "driver options", "strategy / granularity", "notes"}
}

func targetRows(d *dataset) [][]string {
	var rows [][]string
	for _, t := range d.r.Targets {
		var opts []string
		for k, v := range t.DriverOptions {
			opts = append(opts, k+"="+v)
		}
		sort.Strings(opts)
		sg := t.Strategy
		if t.Granularity != "" {
			sg += " / " + t.Granularity
		}
		rows = append(rows, []string{t.ID, d.machineLabel(t.Machine), t.Driver, t.Backing, t.Device,
			drivers.YesNo(t.Loop), drivers.YesNo(t.DirectIO), t.MountOptions, strings.Join(opts, ", "), sg, strings.Join(t.Notes, "; ")})
	}
	return rows
}

// mdFindings writes the findings section: one paragraph per question, the
// published claims it was set against, then the sources.
func mdFindings(b *strings.Builder, f findingsReport) {
	b.WriteString("## Findings\n\n" + f.Intro + "\n")
	for _, x := range f.Findings {
		fmt.Fprintf(b, "\n**%s** %s\n", mdEscape(x.Question), mdEscape(strings.Join(x.Sentences, " ")))
		if len(x.Anchors) > 0 {
			b.WriteString("\n")
		}
		for _, a := range x.Anchors {
			fmt.Fprintf(b, "- Published, %s [%s]: %s\n", a.Verdict, mdEscape(a.Anchor.ID), mdEscape(a.Text))
		}
	}
	if len(f.NotMeasured) > 0 {
		b.WriteString("\nNot measured in this run: " + strings.Join(f.NotMeasured, ", ") + ".\n")
	}
	if len(f.Anchors) == 0 {
		return
	}
	b.WriteString("\n### Published results the findings are set against\n\n")
	var rows [][]string
	for _, a := range f.Anchors {
		rows = append(rows, []string{"[" + a.ID + "](" + a.URL + ")", a.Source, a.Published, a.Setup, figuresText(a), a.Caveat})
	}
	mdTable(b, anchorHeader(), rows)
}

func anchorHeader() []string {
	return []string{"anchor", "source", "published", "setup", "figures", "caveat"}
}

// figuresText lists an anchor's figures as the source printed them.
func figuresText(a anchor) string {
	var out []string
	for _, f := range a.Figures {
		out = append(out, f.Quote)
	}
	if len(out) == 0 {
		return "none (qualitative)"
	}
	return strings.Join(out, "; ")
}
