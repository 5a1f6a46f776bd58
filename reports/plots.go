package reports

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/layerlab/layerlab/bench/stats"
)

// chartLabel names a line: target, "(cold)", and the machine once there
// are several.
func (d *dataset) chartLabel(e *entry) string {
	return e.label + d.machineSuffix(e)
}

// machineSuffix is " @host" when several machines are shown and the
// target name does not already carry the host (Merge prefixes only the
// IDs that collide).
func (d *dataset) machineSuffix(e *entry) string {
	if len(d.machines) < 2 || strings.HasPrefix(strings.TrimPrefix(e.Target, "floor:"), e.machine+"/") {
		return ""
	}
	return " @" + e.machine
}

// refScale picks the display unit from the median of the medians, so most
// of the chart reads in one unit (µs or ms, KiB or MiB).
func refScale(unit string, es []*entry) scale {
	var ms []float64
	for _, e := range es {
		if m := e.sum.P50; !math.IsNaN(m) && !math.IsInf(m, 0) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return scaleFor(unit, 0)
	}
	return scaleFor(unit, stats.Median(ms))
}

// floorIndexer numbers floors within one chart so several floors get
// different greys.
func floorIndexer() func(*entry) int {
	seen := map[string]int{}
	return func(e *entry) int {
		if !e.Floor {
			return 0
		}
		if _, ok := seen[e.Target]; !ok {
			seen[e.Target] = len(seen)
		}
		return seen[e.Target]
	}
}

// scaledSamples are e's finite samples through tr, sorted; with positive
// set, only the ones a log axis can show.
func scaledSamples(e *entry, tr func(float64) float64, positive bool) []float64 {
	var out []float64
	for _, v := range finite(e.Samples) {
		if !positive || v > 0 {
			out = append(out, tr(v))
		}
	}
	sort.Float64s(out)
	return out
}

// sampleRange is the smallest and largest finite sample of es.
func sampleRange(es []*entry) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, e := range es {
		for _, v := range finite(e.Samples) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	return lo, hi
}

// cdfChart draws the empirical CDF of every series of an op, one step line
// per target: the whole distribution, tails included.
func cdfChart(d *dataset, g *group) (*figure, error) {
	f := newFigure(fmt.Sprintf("%s / %s: latency CDF", g.workload, g.op), "", "fraction of samples ≤ x")
	lo, hi := sampleRange(g.entries)
	tr, logX := valueAxis(&f.p.X, g.unit, "", g.entries, lo, hi)
	fi := floorIndexer()
	n := 0
	for _, e := range g.entries {
		xs := scaledSamples(e, tr, logX)
		if len(xs) == 0 {
			continue
		}
		pts := make(plotter.XYs, 0, len(xs)+1)
		pts = append(pts, plotter.XY{X: xs[0], Y: 0})
		for i, x := range xs {
			pts = append(pts, plotter.XY{X: x, Y: float64(i+1) / float64(len(xs))})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		l.StepStyle = plotter.PostStep
		l.LineStyle, _ = seriesStyle(e, fi(e))
		f.add(fmt.Sprintf("%s (n=%d)", d.chartLabel(e), len(xs)), l)
		n++
	}
	if n == 0 {
		return nil, nil
	}
	f.p.Y.Min, f.p.Y.Max = 0, 1
	return f, nil
}

// boxChart draws one horizontal box per target (Tukey: box = quartiles,
// whiskers to 1.5 IQR, dots beyond), top to bottom in run order.
func boxChart(d *dataset, g *group) (*figure, error) {
	f := newFigure(fmt.Sprintf("%s / %s: latency by target", g.workload, g.op), "", "")
	lo, hi := sampleRange(g.entries)
	tr, logX := valueAxis(&f.p.X, g.unit, "", g.entries, lo, hi)
	var es []*entry
	for _, e := range g.entries {
		if len(scaledSamples(e, tr, logX)) > 0 {
			es = append(es, e)
		}
	}
	if len(es) == 0 {
		return nil, nil
	}
	fi := floorIndexer()
	names := make([]string, len(es))
	for i, e := range es {
		loc := float64(len(es) - 1 - i)
		b, err := plotter.NewBoxPlot(vg.Points(16), loc, plotter.Values(scaledSamples(e, tr, logX)))
		if err != nil {
			return nil, err
		}
		b.Horizontal = true
		ls, c := seriesStyle(e, fi(e))
		ls.Width = vg.Points(1.2)
		b.BoxStyle, b.MedianStyle = ls, draw.LineStyle{Color: c, Width: vg.Points(2.4)}
		b.WhiskerStyle.Color = c
		b.FillColor = withAlpha(c, 60)
		b.GlyphStyle.Color = c
		b.GlyphStyle.Radius = vg.Points(1.5)
		f.p.Add(b)
		names[len(es)-1-i] = d.chartLabel(e)
	}
	f.p.NominalY(names...)
	f.h = max(7*vg.Centimeter, vg.Length(len(es))*vg.Centimeter+3*vg.Centimeter)
	return f, nil
}

// line is one target's points across a sweep.
type line struct {
	e   *entry // the first; its style and label stand for the line
	pts []*entry
}

// sweepLines gathers a group's entries into one line per target, cache and
// machine, sorted by the swept value.
func sweepLines(es []*entry) []*line {
	var out []*line
	ix := map[string]*line{}
	for _, e := range es {
		k := fmt.Sprintf("%s\x00%s\x00%d", e.Target, e.Cache, e.Machine)
		l := ix[k]
		if l == nil {
			l = &line{e: e}
			ix[k] = l
			out = append(out, l)
		}
		l.pts = append(l.pts, e)
	}
	for _, l := range out {
		sort.SliceStable(l.pts, func(i, j int) bool { return l.pts[i].Value < l.pts[j].Value })
	}
	return out
}

func ok(x float64, positive bool) bool {
	return !math.IsNaN(x) && !math.IsInf(x, 0) && (!positive || x > 0)
}

// sweepChart draws median vs the swept parameter per target with its 95%
// bootstrap CI as a translucent band; floors dashed grey. Axes go log
// where values span ≥ 20× (copy-up sizes, container counts).
func sweepChart(d *dataset, g *group) (*figure, error) {
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	xs := map[float64]bool{}
	for _, e := range g.entries {
		if ok(e.sum.P50, false) {
			xlo, xhi = math.Min(xlo, e.Value), math.Max(xhi, e.Value)
			ylo, yhi = math.Min(ylo, e.sum.P50), math.Max(yhi, e.sum.P50)
			xs[e.Value] = true
		}
	}
	if len(xs) == 0 {
		return nil, nil
	}
	f := newFigure(fmt.Sprintf("%s / %s: median %s vs %s", g.workload, g.op, quantity(g.unit), g.param), g.param, "")
	logX := wide(xlo, xhi)
	xtr := func(v float64) float64 { return v }
	if logX {
		xtr = log10
	}
	tr, logY := valueAxis(&f.p.Y, g.unit, "median ", g.entries, ylo, yhi)
	fi := floorIndexer()
	for _, l := range sweepLines(g.entries) {
		var mid, upper, lower plotter.XYs
		for _, e := range l.pts {
			m := e.sum.P50
			if !ok(e.Value, logX) || !ok(m, logY) {
				continue
			}
			x := xtr(e.Value)
			mid = append(mid, plotter.XY{X: x, Y: tr(m)})
			if ok(e.sum.CILow, logY) && ok(e.sum.CIHigh, logY) {
				upper = append(upper, plotter.XY{X: x, Y: tr(e.sum.CIHigh)})
				lower = append(lower, plotter.XY{X: x, Y: tr(e.sum.CILow)})
			}
		}
		if len(mid) == 0 {
			continue
		}
		ls, c := seriesStyle(l.e, fi(l.e))
		var parts []plot.Plotter
		if len(upper) >= 2 {
			ring := append(plotter.XYs{}, upper...)
			for i := len(lower) - 1; i >= 0; i-- {
				ring = append(ring, lower[i])
			}
			band, err := plotter.NewPolygon(ring)
			if err != nil {
				return nil, err
			}
			band.Color = withAlpha(c, 50)
			band.LineStyle.Width = 0
			parts = append(parts, band)
		}
		ln, err := plotter.NewLine(mid)
		if err != nil {
			return nil, err
		}
		ln.LineStyle = ls
		pts, err := plotter.NewScatter(mid)
		if err != nil {
			return nil, err
		}
		pts.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.2), Shape: draw.CircleGlyph{}}
		f.add(d.chartLabel(l.e), append(parts, ln, pts)...)
	}
	if logX {
		if isSizeParam(g.param) {
			f.p.X.Tick.Marker = log2Ticker(paramTick(g.param))
		} else {
			f.p.X.Tick.Marker = logTicker(paramTick(g.param))
		}
	}
	// A handful of swept values read best labelled exactly ("4 KiB", "16").
	if len(xs) <= 12 {
		var ticks []plot.Tick
		for v := range xs {
			ticks = append(ticks, plot.Tick{Value: xtr(v), Label: paramTick(g.param)(v)})
		}
		sort.Slice(ticks, func(i, j int) bool { return ticks[i].Value < ticks[j].Value })
		if len(ticks) > 8 && !logX { // crowded on a linear axis: label every other
			for i := 1; i < len(ticks)-1; i += 2 {
				ticks[i].Label = ""
			}
		}
		f.p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	if logX {
		f.p.X.Label.Text += " (log scale)"
	}
	return f, nil
}

// paramTick labels swept values on an axis: "4 KiB" for sizes, "16" else.
func paramTick(param string) func(float64) string {
	if isSizeParam(param) {
		return tickLabel("bytes")
	}
	return func(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }
}

// barGroups are the x positions of a bar chart: one per op and swept
// value, in run order.
func barGroups(es []*entry) []string {
	var out []string
	seen := map[string]bool{}
	ops := map[string]bool{}
	for _, e := range es {
		ops[e.Op] = true
	}
	for _, e := range es {
		k := barGroupName(e, len(ops) > 1)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

func barGroupName(e *entry, withOp bool) string {
	p := paramLabel(e.Series)
	switch {
	case !withOp && p != "":
		return p
	case p != "":
		return e.Op + " " + p
	}
	return e.Op
}

// barChart draws grouped bars: x = op (and swept value), one bar per
// target, height = median, whiskers = 95% CI. Floors grey with a dashed
// outline, cold bars paler.
func barChart(d *dataset, es []*entry) (*figure, error) {
	groups := barGroups(es)
	ops := map[string]bool{}
	for _, e := range es {
		ops[e.Op] = true
	}
	gix := map[string]int{}
	for i, gname := range groups {
		gix[gname] = i
	}
	// Bars within a group: drivers in target order, then floors.
	var lines []*line
	for _, l := range sweepLines(es) {
		if !l.e.Floor {
			lines = append(lines, l)
		}
	}
	for _, l := range sweepLines(es) {
		if l.e.Floor {
			lines = append(lines, l)
		}
	}
	unit := es[0].Unit
	sc := refScale(unit, es)
	title := fmt.Sprintf("%s: median %s (95%% CI)", es[0].Workload, quantity(unit))
	if len(ops) == 1 && len(groups) > 1 {
		title = fmt.Sprintf("%s / %s: median %s (95%% CI)", es[0].Workload, es[0].Op, quantity(unit))
	}
	f := newFigure(title, "", "median "+axisLabel(unit, sc))
	fi := floorIndexer()
	slot := 0.8 / float64(len(lines))
	drawn := 0
	for li, l := range lines {
		ls, c := seriesStyle(l.e, fi(l.e))
		var parts []plot.Plotter
		var swatch *plotter.Polygon
		for _, e := range l.pts {
			m := e.sum.P50
			if !ok(m, false) {
				continue
			}
			x := float64(gix[barGroupName(e, len(ops) > 1)]) - 0.4 + slot*(float64(li)+0.5)
			half, y := slot*0.45, m/sc.div
			bar, err := plotter.NewPolygon(plotter.XYs{{X: x - half, Y: 0}, {X: x + half, Y: 0}, {X: x + half, Y: y}, {X: x - half, Y: y}})
			if err != nil {
				return nil, err
			}
			bar.Color = c
			bar.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(0.8)}
			if l.e.Floor {
				bar.Color = withAlpha(c, 90)
				bar.LineStyle = ls
				bar.LineStyle.Width = vg.Points(1.2)
			} else if l.e.cold() {
				bar.Color = withAlpha(c, 110)
			}
			parts = append(parts, bar)
			swatch = bar
			if ok(e.sum.CILow, false) && ok(e.sum.CIHigh, false) {
				eb := &plotter.YErrorBars{
					XYs:       plotter.XYs{{X: x, Y: y}},
					YErrors:   plotter.YErrors{{Low: math.Max(0, y-e.sum.CILow/sc.div), High: math.Max(0, e.sum.CIHigh/sc.div-y)}},
					LineStyle: draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)},
					CapWidth:  vg.Points(4),
				}
				parts = append(parts, eb)
			}
		}
		if swatch == nil {
			continue
		}
		f.p.Add(parts...)
		f.legend = append(f.legend, legendItem{d.chartLabel(l.e), []plot.Thumbnailer{swatch}})
		drawn++
	}
	if drawn == 0 {
		return nil, nil
	}
	ticks := make([]plot.Tick, len(groups))
	for i, gname := range groups {
		ticks[i] = plot.Tick{Value: float64(i), Label: gname}
	}
	f.p.X.Tick.Marker = plot.ConstantTicks(ticks)
	f.p.X.Min, f.p.X.Max = -0.5, float64(len(groups))-0.5
	f.p.Y.Min = math.Min(f.p.Y.Min, 0)
	f.w = min(32*vg.Centimeter, max(16*vg.Centimeter, vg.Length(len(groups)*len(lines))*0.9*vg.Centimeter+4*vg.Centimeter))
	return f, nil
}
