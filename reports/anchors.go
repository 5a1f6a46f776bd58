package reports

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/layerlab/layerlab/bench/stats"
)

// anchorsJSON is the published results the findings are set against, with
// their sources. It is data, kept beside the code that reads it; a string
// so nothing can change it at run time.
//
//go:embed anchors.json
var anchorsJSON string

// anchor is one published source.
type anchor struct {
	ID        string `json:"id"`
	Source    string `json:"source"`
	URL       string `json:"url"`
	Published string `json:"published"`
	Setup     string `json:"setup"`
	// Caveat says how the source's measurement differs from layerlab's.
	Caveat  string         `json:"caveat"`
	Figures []anchorFigure `json:"figures,omitempty"`
	Claims  []anchorClaim  `json:"claims"`
}

// anchorFigure is one published number, as the source printed it (Quote)
// and per operation (Value).
type anchorFigure struct {
	Driver string  `json:"driver"`
	Op     string  `json:"op"`
	At     float64 `json:"at,omitempty"` // layers, when the source swept them
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Quote  string  `json:"quote"`
}

// anchorClaim is what a source says that a run can confirm or contradict.
type anchorClaim struct {
	Question string `json:"question"` // the finding it belongs to
	// Kind "faster": Drivers[0] took less time than Drivers[1]; "grows":
	// each driver's time grows with the swept variable.
	Kind     string `json:"kind"`
	Workload string `json:"workload"`
	Op       string `json:"op,omitempty"` // empty: the workload's first op
	// At is the swept value to compare at: 0 when nothing is swept, -1
	// for the largest value measured, else the nearest value measured.
	At      float64   `json:"at,omitempty"`
	Drivers []string  `json:"drivers"`
	Values  []float64 `json:"values,omitempty"` // the published figures, per driver
	Says    string    `json:"says"`
}

func loadAnchors() ([]anchor, error) {
	var as []anchor
	if err := json.Unmarshal([]byte(anchorsJSON), &as); err != nil {
		return nil, fmt.Errorf("reports: anchors.json: %w", err)
	}
	return as, nil
}

// Verdicts of a claim against a run.
const (
	verdictAgrees       = "agrees"
	verdictDisagrees    = "disagrees"
	verdictInconclusive = "inconclusive"
	verdictNotMeasured  = "not measured here"
)

// anchorCheck is one claim set against this run.
type anchorCheck struct {
	Anchor  *anchor
	Claim   *anchorClaim
	Verdict string // the overall one: disagrees wins over agrees
	Text    string
}

// checkClaims sets every claim about question against the run.
func checkClaims(d *dataset, anchors []anchor, question string) []anchorCheck {
	var out []anchorCheck
	for i := range anchors {
		a := &anchors[i]
		for j := range a.Claims {
			c := &a.Claims[j]
			if c.Question != question {
				continue
			}
			var ch anchorCheck
			switch c.Kind {
			case "faster":
				ch = checkFaster(d, a, c)
			case "grows":
				ch = checkGrows(d, a, c)
			default:
				continue
			}
			out = append(out, ch)
		}
	}
	return out
}

// driverOf names the driver of a series' target.
func (d *dataset) driverOf(e *entry) string {
	if t := d.targets[e.Target]; t != nil && t.Driver != "" {
		return t.Driver
	}
	id := strings.TrimPrefix(e.Target, e.machine+"/")
	drv, _, _ := strings.Cut(id, "/")
	return drv
}

func (d *dataset) backingOf(e *entry) string {
	if t := d.targets[e.Target]; t != nil {
		return t.Backing
	}
	return ""
}

// claimEntries are the warm, non-floor series a claim speaks of, for
// driver drv.
func claimEntries(d *dataset, c *anchorClaim, drv string) []*entry {
	op := c.Op
	if op == "" {
		op = firstOp(d, c.Workload)
	}
	var out []*entry
	for _, e := range measured(d, c.Workload, op) {
		if d.driverOf(e) == drv {
			out = append(out, e)
		}
	}
	return out
}

// pickValue chooses the swept value to compare at among those measured.
func pickValue(values []float64, at float64) (float64, bool) {
	if len(values) == 0 {
		return 0, false
	}
	sort.Float64s(values)
	switch {
	case at < 0:
		return values[len(values)-1], true
	case at == 0:
		return values[0], true
	}
	best := values[0]
	for _, v := range values {
		if v > 0 && math.Abs(math.Log(v/at)) < math.Abs(math.Log(best/at)) {
			best = v
		}
	}
	return best, true
}

func checkFaster(d *dataset, a *anchor, c *anchorClaim) anchorCheck {
	ch := anchorCheck{Anchor: a, Claim: c}
	lead := fmt.Sprintf("%s (%s): %s", a.ID, a.Published, c.Says)
	if len(c.Values) == 2 && c.Values[0] > 0 {
		lead += fmt.Sprintf(" (%.2f×)", c.Values[1]/c.Values[0])
	}
	if len(c.Drivers) != 2 {
		ch.Verdict, ch.Text = verdictInconclusive, lead+"."
		return ch
	}
	fast, slow := claimEntries(d, c, c.Drivers[0]), claimEntries(d, c, c.Drivers[1])
	if len(fast) == 0 || len(slow) == 0 {
		ch.Verdict = verdictNotMeasured
		ch.Text = lead + ". " + notMeasured(d, c.Drivers, fast, slow)
		return ch
	}
	// Compare at one swept value both drivers have.
	where := ""
	if fast[0].Param != "" {
		common := commonValues(fast, slow)
		v, ok := pickValue(common, c.At)
		if !ok {
			ch.Verdict, ch.Text = verdictNotMeasured, lead+". This run has no "+fast[0].Param+" both drivers were measured at."
			return ch
		}
		fast, slow = atValue(fast, v), atValue(slow, v)
		where = fmt.Sprintf(" at %s=%s", fast[0].Param, formatParam(fast[0].Param, v))
	}
	var parts []string
	verdicts := map[string]bool{}
	for _, p := range pairByBacking(d, fast, slow) {
		x, y := p[0], p[1]
		diff := differ(x, y)
		v := verdictInconclusive
		switch {
		case diff.Significant && x.sum.P50 < y.sum.P50:
			v = verdictAgrees
		case diff.Significant:
			v = verdictDisagrees
		}
		verdicts[v] = true
		winner, loser := x, y
		if y.sum.P50 < x.sum.P50 {
			winner, loser = y, x
		}
		s := fmt.Sprintf("%s (%s) is faster than %s (%s): %s, %s", winner.Target, medianCI(winner), loser.Target, medianCI(loser), v, verdictPhrase(diff))
		if v == verdictDisagrees {
			s += "; likely because " + strings.Join(likelyReasons(d, x, y), "; ")
		}
		parts = append(parts, s)
	}
	ch.Verdict = overall(verdicts)
	ch.Text = lead + ". Here" + where + ": " + strings.Join(parts, ". ") + "."
	return ch
}

func checkGrows(d *dataset, a *anchor, c *anchorClaim) anchorCheck {
	ch := anchorCheck{Anchor: a, Claim: c}
	lead := fmt.Sprintf("%s (%s): %s", a.ID, a.Published, c.Says)
	var parts []string
	verdicts := map[string]bool{}
	var none []string
	for _, drv := range c.Drivers {
		es := claimEntries(d, c, drv)
		if len(es) == 0 {
			none = append(none, drv)
			continue
		}
		for _, tt := range trendsOf(d, es) {
			v := verdictInconclusive
			switch {
			case tt.flat():
				v = verdictDisagrees
			case tt.trend.Grows():
				v = verdictAgrees
			}
			verdicts[v] = true
			s := fmt.Sprintf("%s %s: %s", tt.target, tt.describe(), v)
			if v == verdictDisagrees {
				s += "; likely because " + strings.Join(likelyReasons(d, tt.entries...), "; ")
			}
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		ch.Verdict = verdictNotMeasured
		ch.Text = lead + ". " + notMeasured(d, none, nil, nil)
		return ch
	}
	if len(none) > 0 {
		parts = append(parts, strings.Join(none, ", ")+" not measured here")
	}
	ch.Verdict = overall(verdicts)
	ch.Text = lead + ". Here: " + strings.Join(parts, "; ") + "."
	return ch
}

func overall(v map[string]bool) string {
	switch {
	case v[verdictDisagrees]:
		return verdictDisagrees
	case v[verdictAgrees]:
		return verdictAgrees
	}
	return verdictInconclusive
}

// notMeasured says which drivers this run lacks, with the run's own note
// on why when it has one (a driver skipped as unavailable).
func notMeasured(d *dataset, drivers []string, fast, slow []*entry) string {
	var missing []string
	for i, drv := range drivers {
		if (i == 0 && len(fast) > 0) || (i == 1 && len(slow) > 0) {
			continue
		}
		missing = append(missing, drv)
	}
	out := "Not measured here: no " + strings.Join(missing, " or ") + " series in this run"
	for _, n := range d.r.Notes {
		for _, drv := range missing {
			if strings.Contains(n, drv) && strings.Contains(strings.ToLower(n), "skip") {
				out += " (" + n + ")"
			}
		}
	}
	return out + "."
}

func commonValues(a, b []*entry) []float64 {
	in := map[float64]bool{}
	for _, e := range a {
		in[e.Value] = true
	}
	var out []float64
	seen := map[float64]bool{}
	for _, e := range b {
		if in[e.Value] && !seen[e.Value] {
			seen[e.Value] = true
			out = append(out, e.Value)
		}
	}
	return out
}

func atValue(es []*entry, v float64) []*entry {
	var out []*entry
	for _, e := range es {
		if e.Value == v {
			out = append(out, e)
		}
	}
	return out
}

// pairByBacking pairs series of the two drivers measured on the same
// machine and filesystem, so a comparison does not mix in the backing
// store; with no such pair it compares each driver's fastest series.
func pairByBacking(d *dataset, a, b []*entry) [][2]*entry {
	var out [][2]*entry
	for _, x := range a {
		for _, y := range b {
			if x.Machine == y.Machine && d.backingOf(x) != "" && d.backingOf(x) == d.backingOf(y) {
				out = append(out, [2]*entry{x, y})
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	return [][2]*entry{{fastest(a), fastest(b)}}
}

func fastest(es []*entry) *entry {
	best := es[0]
	for _, e := range es[1:] {
		if e.sum.P50 < best.sum.P50 {
			best = e
		}
	}
	return best
}

// likelyReasons names what, in the results themselves, makes this
// machine's figures differ from published ones on real disks and kernels.
func likelyReasons(d *dataset, es ...*entry) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, e := range es {
		t := d.targets[e.Target]
		if t == nil {
			continue
		}
		for _, n := range t.Notes {
			if strings.Contains(n, "reflink") {
				add(e.Target + ": " + n)
			}
		}
		if t.Driver == "zfs" && (strings.HasPrefix(t.Backing, "fuse") || notesMention(t.Notes, "zfs-fuse")) {
			add("zfs-fuse is ZFS in a userspace daemon reached through FUSE, not kernel OpenZFS: every operation crosses into the daemon")
		}
		if m := e.Machine; m >= 0 && m < len(d.r.Machines) && strings.Contains(strings.ToUpper(d.r.Machines[m].CPU), "TCG") {
			add(d.machineLabel(m) + " is a qemu guest under TCG emulation (no KVM), where kernel work runs many times slower than on hardware")
		}
		if t.Loop {
			add(e.Target + " sits on a loop device over a file, so its I/O also goes through the host's filesystem")
		}
	}
	if len(out) == 0 {
		out = append(out, "nothing in these results explains it: the hardware, kernel and versions differ from the source's")
	}
	return out
}

func notesMention(notes []string, s string) bool {
	for _, n := range notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// differ tests two series with the report's rule (stats.Differ).
func differ(a, b *entry) stats.Difference {
	return stats.Differ(finite(a.Samples), finite(b.Samples), a.sum.CILow, a.sum.CIHigh, b.sum.CILow, b.sum.CIHigh, stats.Alpha)
}
