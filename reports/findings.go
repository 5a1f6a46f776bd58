package reports

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/layerlab/layerlab/bench/stats"
)

// The findings open the report the way a paper's results section does:
// one answer per headline question, every figure a median with its 95%
// interval, "significant" only where stats.Differ says so, set against the
// published results in anchors.json. Everything here is computed from the
// results; nothing is written by hand but the questions.

// findingsIntro says how to read the findings.
const findingsIntro = "Computed from this run's samples. Figures are medians with their 95% bootstrap confidence interval in brackets; " +
	"a difference is called significant only when the Mann-Whitney U test gives p < 0.05 and the two intervals do not overlap. " +
	"Growth is the least-squares slope of the medians, its interval from resampling every point."

// finding answers one question.
type finding struct {
	ID, Question string
	Sentences    []string
	Anchors      []anchorCheck
}

// findingsReport is what the Markdown and HTML reports show first.
type findingsReport struct {
	Intro       string
	Findings    []finding
	NotMeasured []string // questions this run has no data for
	Anchors     []anchor
}

type question struct {
	id, text string
	answer   func(*dataset) []string
}

func questions() []question {
	return []question{
		{"create", "Which driver creates a snapshot (Prepare) fastest?", func(d *dataset) []string {
			return ranking(measured(d, "snapshot-ops", "prepare"), "creates fastest")
		}},
		{"remove", "Which driver removes a snapshot fastest?", func(d *dataset) []string {
			return ranking(measured(d, "snapshot-ops", opWithPrefix(d, "snapshot-ops", "remove")), "removes fastest")
		}},
		{"mount", "Which driver mounts a snapshot fastest?", func(d *dataset) []string {
			return ranking(measured(d, "snapshot-ops", "mount"), "mounts fastest")
		}},
		{"copy-up", "How does the cost of a first write (copy-up) grow with the file's size, for file- and block-granular drivers?", copyUpFinding},
		{"write-amp", "How much do the drivers amplify writes (bytes the device wrote per byte written)?", writeAmpFinding},
		{"depth", "How does the cost grow with the depth of the layer chain?", depthFinding},
		{"density", "How much space does each container take?", densityFinding},
	}
}

// findings answers every question the results have data for.
func findings(d *dataset) (findingsReport, error) {
	anchors, err := loadAnchors()
	if err != nil {
		return findingsReport{}, err
	}
	out := findingsReport{Intro: findingsIntro, Anchors: anchors}
	for _, q := range questions() {
		s := q.answer(d)
		if len(s) == 0 {
			out.NotMeasured = append(out.NotMeasured, q.id)
			continue
		}
		out.Findings = append(out.Findings, finding{ID: q.id, Question: q.text, Sentences: s, Anchors: checkClaims(d, anchors, q.id)})
	}
	return out, nil
}

// measured are the warm, non-floor series of workload/op with a median.
func measured(d *dataset, workload, op string) []*entry {
	var out []*entry
	for _, e := range d.entries {
		if e.Workload == workload && e.Op == op && !e.Floor && !e.cold() && e.sum.N > 0 &&
			!math.IsNaN(e.sum.P50) && !math.IsInf(e.sum.P50, 0) {
			out = append(out, e)
		}
	}
	return out
}

// firstOp is workload's first op in run order: the one its charts lead with.
func firstOp(d *dataset, workload string) string {
	return opWithPrefix(d, workload, "")
}

func opWithPrefix(d *dataset, workload, prefix string) string {
	op, best := "", math.MaxInt
	for _, e := range d.entries {
		if e.Workload == workload && !e.Floor && strings.HasPrefix(e.Op, prefix) {
			if o := d.opOrder[e.Workload+"\x00"+e.Op]; o < best {
				op, best = e.Op, o
			}
		}
	}
	return op
}

// fmtVal renders a value with its unit; ratios read as multiples.
func fmtVal(unit string, v float64) string {
	if unit == "ratio" {
		return formatValue(unit, v) + "×"
	}
	return formatValue(unit, v)
}

// medianCI is "1.21 ms [1.15 ms, 1.30 ms]".
func medianCI(e *entry) string {
	return fmt.Sprintf("%s [%s, %s]", fmtVal(e.Unit, e.sum.P50), fmtVal(e.Unit, e.sum.CILow), fmtVal(e.Unit, e.sum.CIHigh))
}

func pValue(p float64) string {
	if p < 0.001 {
		return "p < 0.001"
	}
	return fmt.Sprintf("p = %.3f", p)
}

// verdictPhrase says whether a difference is significant and why.
func verdictPhrase(diff stats.Difference) string {
	switch {
	case math.IsNaN(diff.P):
		return "not significant (no samples to test)"
	case diff.Significant:
		return fmt.Sprintf("significant (Mann-Whitney %s; the 95%% intervals do not overlap)", pValue(diff.P))
	case diff.Overlap:
		return fmt.Sprintf("not significant (the 95%% intervals overlap; %s)", pValue(diff.P))
	}
	return fmt.Sprintf("not significant (%s, not below 0.05)", pValue(diff.P))
}

// verdictOf adds the sample counts a test needs to the verdict.
func verdictOf(a, b *entry) string {
	if a.sum.N < 2 || b.sum.N < 2 {
		return "not significant (a single sample on a side: no interval, no test)"
	}
	return verdictPhrase(differ(a, b))
}

func worseWord(unit string) string {
	if unit == "ns" {
		return "slower"
	}
	if higherIsBetter(unit) {
		return "lower"
	}
	return "higher"
}

// byMedian sorts best first (lowest, or highest for throughput).
func byMedian(es []*entry) []*entry {
	out := append([]*entry(nil), es...)
	sort.SliceStable(out, func(i, j int) bool { return better(out[i].Unit, out[i].sum.P50, out[j].sum.P50) })
	return out
}

// ranking names the best series, how it stands against the runner-up and
// the worst, with each difference's verdict.
func ranking(es []*entry, verb string) []string {
	if len(es) == 0 {
		return nil
	}
	es = byMedian(es)
	best := es[0]
	if len(es) == 1 {
		return []string{fmt.Sprintf("Only %s was measured: %s (n=%d).", best.Target, medianCI(best), best.sum.N)}
	}
	next := es[1]
	verdict := verdictOf(best, next)
	var s string
	if strings.HasPrefix(verdict, "significant") {
		s = fmt.Sprintf("%s %s: %s (n=%d); the runner-up, %s at %s, is %s: %s.",
			best.Target, verb, medianCI(best), best.sum.N, next.Target, medianCI(next), times(best, next), verdict)
	} else {
		s = fmt.Sprintf("%s has the best median, %s (n=%d), but the runner-up, %s at %s (%s), is not told apart from it: %s.",
			best.Target, medianCI(best), best.sum.N, next.Target, medianCI(next), times(best, next), verdict)
	}
	out := []string{s}
	if len(es) > 2 {
		worst := es[len(es)-1]
		out = append(out, fmt.Sprintf("Worst of %d: %s at %s, %s than %s: %s.", len(es), worst.Target, medianCI(worst),
			times(best, worst), best.Target, verdictOf(best, worst)))
	}
	return out
}

// times is "2.00× slower" (how much worse other is than best), or
// "worse" where a zero median makes the ratio meaningless.
func times(best, other *entry) string {
	rel := relativeTo(best.Unit, other.sum.P50, best.sum.P50)
	if math.IsNaN(rel) || math.IsInf(rel, 0) || rel <= 0 {
		return worseWord(best.Unit)
	}
	return fmt.Sprintf("%.2f× %s", rel, worseWord(best.Unit))
}

// targetTrend is one target's swept series and their fitted trend.
type targetTrend struct {
	target  string
	entries []*entry // by swept value
	trend   stats.Trend
	logLog  bool // a power law (sizes), else a straight line
}

// trendsOf fits a trend per target: an exponent for sizes (copy-up time
// is expected to be a power of the size), a slope per unit otherwise.
func trendsOf(d *dataset, es []*entry) []targetTrend {
	var order []string
	by := map[string][]*entry{}
	for _, e := range es {
		if e.Param == "" {
			continue
		}
		if _, ok := by[e.Target]; !ok {
			order = append(order, e.Target)
		}
		by[e.Target] = append(by[e.Target], e)
	}
	var out []targetTrend
	for i, t := range order {
		ts := by[t]
		sort.SliceStable(ts, func(a, b int) bool { return ts[a].Value < ts[b].Value })
		tt := targetTrend{target: t, entries: ts, logLog: isSizeParam(ts[0].Param)}
		var xs []float64
		var ys [][]float64
		for _, e := range ts {
			x, y := e.Value, finite(e.Samples)
			if tt.logLog {
				x, y = math.Log(x), logs(y)
			}
			xs, ys = append(xs, x), append(ys, y)
		}
		tt.trend = stats.FitTrend(xs, ys, 1000, int64(i+1))
		if tt.trend.Points >= 2 {
			out = append(out, tt)
		}
	}
	return out
}

// logs keeps the logarithms of the positive samples.
func logs(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if x > 0 {
			out = append(out, math.Log(x))
		}
	}
	return out
}

// flat says the trend is, with 95% confidence, too small to matter: an
// exponent within ±0.1, or a slope moving the median by under 10% across
// the whole sweep.
func (tt targetTrend) flat() bool {
	t := tt.trend
	if tt.logLog {
		return t.CILow > -0.1 && t.CIHigh < 0.1
	}
	first, last := tt.entries[0], tt.entries[len(tt.entries)-1]
	span := (last.Value - first.Value) * math.Max(math.Abs(t.CILow), math.Abs(t.CIHigh))
	return first.sum.P50 > 0 && span < 0.1*first.sum.P50
}

// perUnit names one step of a swept variable.
func perUnit(param string) string {
	switch param {
	case "depth", "layers":
		return "layer"
	case "containers":
		return "container"
	case "files":
		return "file"
	}
	return param
}

// describe is "grows significantly, ∝ size^0.71 [0.68, 0.75] (958 µs at
// 4.00 KiB → 58.0 ms at 64.0 MiB)".
func (tt targetTrend) describe() string {
	t := tt.trend
	first, last := tt.entries[0], tt.entries[len(tt.entries)-1]
	p := first.Param
	span := fmt.Sprintf("%s at %s → %s at %s", fmtVal(first.Unit, first.sum.P50), formatParam(p, first.Value),
		fmtVal(last.Unit, last.sum.P50), formatParam(p, last.Value))
	var shape string
	if tt.logLog {
		shape = fmt.Sprintf("∝ %s^%.2f [%.2f, %.2f]", p, t.Slope, t.CILow, t.CIHigh)
	} else {
		shape = fmt.Sprintf("%s per %s [%s, %s]", signed(first.Unit, t.Slope), perUnit(p), signed(first.Unit, t.CILow), signed(first.Unit, t.CIHigh))
	}
	// Flat first: growth too small to matter is not worth a "grows",
	// however sure the fit is of its sign.
	switch {
	case tt.flat():
		return fmt.Sprintf("stays flat, %s (%s)", shape, span)
	case t.Grows():
		return fmt.Sprintf("grows significantly, %s (%s)", shape, span)
	}
	return fmt.Sprintf("shows no significant growth, %s (%s)", shape, span)
}

func signed(unit string, v float64) string {
	if v >= 0 {
		return "+" + fmtVal(unit, v)
	}
	return "−" + fmtVal(unit, -v)
}

// granularityPhrase introduces a group of targets in the copy-up finding.
func granularityPhrase(g string) string {
	switch g {
	case "file":
		return "File-granular targets (a first write copies the whole file up)"
	case "block":
		return "Block-granular targets (a first write copies or clones only blocks)"
	case "snapshot":
		return "Snapshot-granular targets (the whole tree was copied at Prepare, so a first write copies nothing)"
	}
	return g + "-granular targets"
}

func (d *dataset) granularityOf(target string) string {
	if t := d.targets[target]; t != nil && t.Granularity != "" {
		return t.Granularity
	}
	return "unknown"
}

func copyUpFinding(d *dataset) []string {
	es := measured(d, "copy-up", firstOp(d, "copy-up"))
	trends := trendsOf(d, es)
	if len(trends) == 0 {
		return nil
	}
	groups := map[string][]targetTrend{}
	var order []string
	for _, tt := range trends {
		g := d.granularityOf(tt.target)
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], tt)
	}
	// File-granular first: the question is about them against the rest.
	rank := func(g string) int {
		switch g {
		case "file":
			return 0
		case "block":
			return 1
		case "snapshot":
			return 2
		}
		return 3
	}
	sort.SliceStable(order, func(i, j int) bool { return rank(order[i]) < rank(order[j]) })
	var out []string
	for _, g := range order {
		head := granularityPhrase(g)
		var parts []string
		for _, tt := range groups[g] {
			parts = append(parts, tt.target+" "+tt.describe())
		}
		out = append(out, head+": "+strings.Join(parts, "; ")+".")
	}
	// The headline: the fastest of each of the first two groups at the
	// largest size both measured.
	if len(order) >= 2 {
		a, b := groups[order[0]], groups[order[1]]
		if x, y, v, ok := fastestAtLargest(a, b); ok {
			fast, slow, fg, sg := x, y, order[0], order[1]
			if y.sum.P50 < x.sum.P50 {
				fast, slow, fg, sg = y, x, order[1], order[0]
			}
			out = append(out, fmt.Sprintf("At %s the fastest %s-granular target, %s (%s), is %s than the fastest %s-granular one, %s (%s): %s.",
				formatParam(fast.Param, v), fg, fast.Target, medianCI(fast), strings.Replace(times(fast, slow), "slower", "faster", 1),
				sg, slow.Target, medianCI(slow), verdictOf(fast, slow)))
		}
	}
	return out
}

// fastestAtLargest finds the largest swept value both groups measured and
// each group's fastest series there.
func fastestAtLargest(a, b []targetTrend) (*entry, *entry, float64, bool) {
	collect := func(g []targetTrend) []*entry {
		var es []*entry
		for _, tt := range g {
			es = append(es, tt.entries...)
		}
		return es
	}
	ea, eb := collect(a), collect(b)
	v, ok := pickValue(commonValues(ea, eb), -1)
	if !ok {
		return nil, nil, 0, false
	}
	return fastest(atValue(ea, v)), fastest(atValue(eb, v)), v, true
}

func writeAmpFinding(d *dataset) []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range d.byWorkload("write-amp") {
		if seen[e.Op] || e.Floor {
			continue
		}
		seen[e.Op] = true
		es := measured(d, "write-amp", e.Op)
		if len(es) == 0 {
			continue
		}
		s := ranking(es, "amplifies least")
		best := byMedian(es)[0]
		for _, f := range d.floorsOf(best) {
			if f.sum.N > 0 && !f.cold() {
				s[0] = strings.TrimSuffix(s[0], ".") + fmt.Sprintf("; the bare filesystem under %s: %s.", best.Target, medianCI(f))
				break
			}
		}
		out = append(out, e.Op+": "+strings.Join(s, " "))
	}
	return out
}

func depthFinding(d *dataset) []string {
	op := firstOp(d, "depth")
	trends := trendsOf(d, measured(d, "depth", op))
	if len(trends) == 0 {
		return nil
	}
	sort.SliceStable(trends, func(i, j int) bool { return trends[i].trend.Slope < trends[j].trend.Slope })
	flat, steep := trends[0], trends[len(trends)-1]
	first := flat.entries[0]
	if len(trends) == 1 {
		return []string{fmt.Sprintf("%s time against %s, measured on %s only: it %s.", op, first.Param, flat.target, flat.describe())}
	}
	out := []string{fmt.Sprintf("%s time against %s: it grows least on %s, which %s, and most on %s, which %s.",
		op, first.Param, flat.target, flat.describe(), steep.target, steep.describe())}
	if len(trends) > 1 {
		v := "not significant (their slope intervals overlap)"
		if steep.trend.CILow > flat.trend.CIHigh {
			v = "significant (the slope intervals do not overlap)"
		}
		out = append(out, "The difference in slope between them is "+v+".")
	}
	if len(trends) > 2 {
		var parts []string
		for _, tt := range trends[1 : len(trends)-1] {
			parts = append(parts, tt.target+" "+tt.describe())
		}
		out = append(out, "In between: "+strings.Join(parts, "; ")+".")
	}
	return out
}

func densityFinding(d *dataset) []string {
	op := ""
	for _, e := range d.byWorkload("density") {
		if e.Unit == "bytes" && !e.Floor {
			op = e.Op
			break
		}
	}
	es := measured(d, "density", op)
	if len(es) == 0 {
		return nil
	}
	var values []float64
	for _, e := range es {
		values = append(values, e.Value)
	}
	v, _ := pickValue(values, -1)
	s := ranking(atValue(es, v), "needs the least space per container")
	if es[0].Param != "" {
		s[0] = fmt.Sprintf("With %s %s: ", formatParam(es[0].Param, v), es[0].Param) + s[0]
	}
	return s
}
