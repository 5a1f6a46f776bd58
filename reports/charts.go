package reports

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// chartFile is a rendered chart; SVG and PNG are relative to the report
// directory, as the HTML and Markdown reference them.
type chartFile struct {
	Name, Title, Workload, Kind string
	SVG, PNG                    string
}

// Chart kinds. The kind follows from the data, not the workload name, so a
// workload this package has never heard of still gets a sensible chart.
const (
	kindCDF   = "cdf"   // ns, nothing swept: distribution per target
	kindBox   = "box"   // same data as the CDF, one box per target
	kindSweep = "sweep" // something swept: median vs parameter, CI band
	kindBars  = "bars"  // anything else: median bars with CI whiskers
)

// group is the series of one workload/op/unit/param, in run order.
type group struct {
	workload, op, unit, param string
	entries                   []*entry
}

func groupSeries(d *dataset) []*group {
	var out []*group
	ix := map[string]*group{}
	for _, e := range d.entries {
		k := strings.Join([]string{e.Workload, e.Op, e.Unit, e.Param}, "\x00")
		g := ix[k]
		if g == nil {
			g = &group{workload: e.Workload, op: e.Op, unit: e.Unit, param: e.Param}
			ix[k] = g
			out = append(out, g)
		}
		g.entries = append(g.entries, e)
	}
	return out
}

func distinctValues(es []*entry) int {
	seen := map[float64]bool{}
	for _, e := range es {
		seen[e.Value] = true
	}
	return len(seen)
}

func hasSamples(es []*entry) bool {
	for _, e := range es {
		if len(finite(e.Samples)) > 0 {
			return true
		}
	}
	return false
}

// chartSpec is a chart to draw: its identity and how to build it.
type chartSpec struct {
	kind, title, workload, slug string
	build                       func() (*figure, error)
}

// planCharts decides which charts the data calls for. Time without a sweep
// gets a CDF and box plot per op; a sweep of time or bytes (or any sweep
// with many values) gets a median-vs-parameter line chart; everything else
// (ratios, throughput, counts) becomes grouped bars, one chart per workload
// and unit so e.g. all write-amplification ops sit side by side.
func planCharts(d *dataset) []chartSpec {
	var specs []chartSpec
	type barKey struct{ workload, unit string }
	bars := map[barKey][]*entry{}
	var barOrder []barKey
	for _, g := range groupSeries(d) {
		g := g
		switch {
		case g.param != "" && (g.unit == "ns" || g.unit == "bytes" || distinctValues(g.entries) > 8):
			specs = append(specs, chartSpec{kindSweep,
				fmt.Sprintf("%s / %s: median %s vs %s (95%% CI band)", g.workload, g.op, quantity(g.unit), g.param),
				g.workload, g.workload + "-" + g.op + "-" + g.param,
				func() (*figure, error) { return sweepChart(d, g) }})
		case g.param == "" && g.unit == "ns" && hasSamples(g.entries):
			specs = append(specs,
				chartSpec{kindCDF, fmt.Sprintf("%s / %s: latency CDF", g.workload, g.op),
					g.workload, g.workload + "-" + g.op, func() (*figure, error) { return cdfChart(d, g) }},
				chartSpec{kindBox, fmt.Sprintf("%s / %s: latency by target", g.workload, g.op),
					g.workload, g.workload + "-" + g.op, func() (*figure, error) { return boxChart(d, g) }})
		default:
			k := barKey{g.workload, g.unit}
			if _, ok := bars[k]; !ok {
				barOrder = append(barOrder, k)
			}
			bars[k] = append(bars[k], g.entries...)
		}
	}
	for _, k := range barOrder {
		es := bars[k]
		title := fmt.Sprintf("%s: median %s (95%% CI)", k.workload, quantity(k.unit))
		slug := k.workload + "-" + strings.ReplaceAll(k.unit, "/", "-per-")
		// Too many bar groups stop being readable: one chart per op then.
		if n := len(barGroups(es)); n > 16 {
			for _, g := range splitByOp(es) {
				g := g
				specs = append(specs, chartSpec{kindBars, fmt.Sprintf("%s / %s: median %s (95%% CI)", k.workload, g[0].Op, quantity(k.unit)),
					k.workload, slug + "-" + g[0].Op, func() (*figure, error) { return barChart(d, g) }})
			}
			continue
		}
		specs = append(specs, chartSpec{kindBars, title, k.workload, slug,
			func() (*figure, error) { return barChart(d, es) }})
	}
	return specs
}

func splitByOp(es []*entry) [][]*entry {
	var out [][]*entry
	ix := map[string]int{}
	for _, e := range es {
		i, ok := ix[e.Op]
		if !ok {
			i = len(out)
			ix[e.Op] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], e)
	}
	return out
}

// renderCharts draws every planned chart as SVG and PNG into dir.
func renderCharts(d *dataset, dir string) ([]chartFile, error) {
	var out []chartFile
	used := map[string]int{}
	for _, s := range planCharts(d) {
		f, err := s.build()
		if err != nil {
			return nil, fmt.Errorf("reports: chart %q: %w", s.title, err)
		}
		if f == nil {
			continue // nothing plottable (no finite values)
		}
		name := slugify(s.kind + "-" + s.slug)
		if used[name]++; used[name] > 1 {
			name += "-" + strconv.Itoa(used[name])
		}
		if err := f.write(dir, name); err != nil {
			return nil, fmt.Errorf("reports: chart %q: %w", s.title, err)
		}
		out = append(out, chartFile{Name: name, Title: s.title, Workload: s.workload, Kind: s.kind,
			SVG: ChartsDir + "/" + name + ".svg", PNG: ChartsDir + "/" + name + ".png"})
	}
	return out, nil
}

// slugify makes a file name from workload/op names anyone may choose.
func slugify(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimSuffix(b.String(), "-")
	if out == "" {
		out = "chart"
	}
	return out
}

// quantity names what a unit measures, for titles and axis labels.
func quantity(unit string) string {
	switch unit {
	case "ns":
		return "latency"
	case "bytes":
		return "size"
	case "bytes/s":
		return "throughput"
	case "ratio":
		return "ratio"
	}
	return unit
}

func axisLabel(unit string, sc scale) string {
	if sc.name == "" {
		return quantity(unit)
	}
	return quantity(unit) + " (" + sc.name + ")"
}

// legendItem is one legend line; figures draw their legend below the plot
// so it never hides data.
type legendItem struct {
	label  string
	thumbs []plot.Thumbnailer
}

type figure struct {
	p      *plot.Plot
	legend []legendItem
	w, h   vg.Length // of the plot, without the legend
}

func sans(size vg.Length) font.Font {
	return font.From(font.Font{Typeface: "Liberation", Variant: "Sans"}, size)
}

func newFigure(title, xlabel, ylabel string) *figure {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font = sans(12)
	p.Title.Padding = vg.Points(6)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = sans(11)
		a.Tick.Label.Font = sans(9)
	}
	p.X.Label.Text, p.Y.Label.Text = xlabel, ylabel
	p.X.Tick.Marker, p.Y.Tick.Marker = niceTicker(), niceTicker()
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	p.Add(grid)
	return &figure{p: p, w: 16 * vg.Centimeter, h: 10 * vg.Centimeter}
}

func (f *figure) add(label string, ps ...plot.Plotter) {
	f.p.Add(ps...)
	var th []plot.Thumbnailer
	for _, p := range ps {
		if t, ok := p.(plot.Thumbnailer); ok {
			th = append(th, t)
		}
	}
	if label != "" {
		f.legend = append(f.legend, legendItem{label, th})
	}
}

const legendPad = vg.Length(8)

func newLegend() plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font = sans(9)
	l.Left, l.Top = true, true
	l.ThumbnailWidth = vg.Points(26)
	l.Padding = vg.Points(3)
	return l
}

// legendLayout returns columns and rows that fit the labels in width w.
func (f *figure) legendLayout() (cols, rows int, rowH vg.Length) {
	n := len(f.legend)
	if n == 0 {
		return 0, 0, 0
	}
	l := newLegend()
	widest := vg.Length(0)
	for _, it := range f.legend {
		widest = max(widest, l.TextStyle.Rectangle(it.label).Max.X)
	}
	need := l.ThumbnailWidth + widest + 4*legendPad
	cols = max(1, min(n, int((f.w-2*legendPad)/need)))
	rows = (n + cols - 1) / cols
	rowH = l.TextStyle.Rectangle("Mg").Max.Y + l.Padding
	return cols, rows, rowH
}

func (f *figure) size() (vg.Length, vg.Length) {
	_, rows, rowH := f.legendLayout()
	if rows == 0 {
		return f.w, f.h
	}
	return f.w, f.h + vg.Length(rows)*rowH + 2*legendPad
}

func (f *figure) draw(c draw.Canvas) {
	c.SetColor(color.White)
	c.Fill(c.Rectangle.Path())
	cols, rows, rowH := f.legendLayout()
	legendH := vg.Length(0)
	if rows > 0 {
		legendH = vg.Length(rows)*rowH + 2*legendPad
	}
	f.p.Draw(draw.Crop(c, 0, 0, legendH, 0))
	if rows == 0 {
		return
	}
	colW := (c.Max.X - c.Min.X - 2*legendPad) / vg.Length(cols)
	for ci := 0; ci < cols; ci++ {
		l := newLegend()
		for i := ci * rows; i < min((ci+1)*rows, len(f.legend)); i++ {
			l.Add(f.legend[i].label, f.legend[i].thumbs...)
		}
		x0 := c.Min.X + legendPad + vg.Length(ci)*colW
		l.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{
			Min: vg.Point{X: x0, Y: c.Min.Y + legendPad},
			Max: vg.Point{X: x0 + colW, Y: c.Min.Y + legendH - legendPad},
		}})
	}
}

// write saves the figure as dir/name.svg and dir/name.png (144 dpi, so it
// stays sharp on high-density screens and in slides).
func (f *figure) write(dir, name string) error {
	w, h := f.size()
	sc := vgsvg.New(w, h)
	f.draw(draw.New(sc))
	if err := writeTo(filepath.Join(dir, name+".svg"), sc); err != nil {
		return err
	}
	ic := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(144))
	f.draw(draw.New(ic))
	return writeTo(filepath.Join(dir, name+".png"), vgimg.PngCanvas{Canvas: ic})
}

func writeTo(path string, wt io.WriterTo) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	_, err = wt.WriteTo(f)
	return err
}

// palette is the Okabe-Ito colour-blind safe set plus a few more; floors
// are never drawn in these, they are grey.
func palette(i int) color.Color {
	p := [...]color.RGBA{
		{0, 114, 178, 255}, {213, 94, 0, 255}, {0, 158, 115, 255}, {204, 121, 167, 255},
		{230, 159, 0, 255}, {86, 180, 233, 255}, {0, 0, 0, 255}, {240, 228, 66, 255},
		{140, 86, 75, 255}, {127, 60, 141, 255},
	}
	return p[((i%len(p))+len(p))%len(p)]
}

// seriesStyle is how an entry is drawn: drivers in their colour, solid
// when warm and dotted when cold; floors grey and dashed.
func seriesStyle(e *entry, floorIx int) (draw.LineStyle, color.Color) {
	c := palette(e.colorIx)
	if e.Floor {
		c = color.Gray{Y: uint8(90 + 40*(floorIx%3))}
	}
	ls := draw.LineStyle{Color: c, Width: vg.Points(1.6)}
	switch {
	case e.Floor && e.cold():
		ls.Dashes = []vg.Length{vg.Points(7), vg.Points(3), vg.Points(2), vg.Points(3)}
	case e.Floor:
		ls.Dashes = []vg.Length{vg.Points(7), vg.Points(4)}
	case e.cold():
		ls.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	}
	return ls, c
}

func withAlpha(c color.Color, a uint8) color.Color {
	r, g, b, _ := c.RGBA()
	// Non-premultiplied so the hue stays the same at any alpha.
	return color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), a}
}

func finite(xs []float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

// wide says a log axis reads better: all positive, spanning ≥ 20×.
func wide(lo, hi float64) bool { return lo > 0 && hi/lo >= 20 }

// Log axes are drawn as linear axes over log10 of the data, with ticks
// labelled in real values: gonum's LogScale places the axis label's glyph
// box at the arithmetic midpoint, which on a log axis lies near the end
// and pushes the plot away from the title.
func log10(v float64) float64 { return math.Log10(v) }

// logTicker labels decades, and 2 and 5 in between when the axis spans
// few decades; label formats a tick value (e.g. "200 µs"). It is given and
// returns log10 positions. Only ticks inside the axis range are returned:
// gonum reserves room for every labelled tick, in range or not.
func logTicker(label func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(llo, lhi float64) []plot.Tick {
		lo, hi := math.Pow(10, llo), math.Pow(10, lhi)
		a, b := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		in := func(v float64) bool { return v >= lo*(1-1e-9) && v <= hi*(1+1e-9) }
		var ts []plot.Tick
		labelled := 0
		for k := a; k <= b; k++ {
			for m := 1.0; m <= 9; m++ {
				v := m * math.Pow(10, k)
				if !in(v) {
					continue
				}
				t := plot.Tick{Value: log10(v)}
				if m == 1 || (b-a <= 3 && (m == 2 || m == 5)) {
					t.Label = label(v)
					labelled++
				}
				ts = append(ts, t)
			}
		}
		if labelled < 2 { // a narrow range: label every tick inside it
			for i := range ts {
				ts[i].Label = label(math.Pow(10, ts[i].Value))
			}
		}
		return ts
	})
}

// log2Ticker is logTicker for binary quantities (bytes): ticks at powers
// of two, every 2^step so that about eight are labelled.
func log2Ticker(label func(float64) string) plot.Ticker {
	return plot.TickerFunc(func(llo, lhi float64) []plot.Tick {
		lo, hi := math.Pow(10, llo), math.Pow(10, lhi)
		a, b := math.Ceil(math.Log2(lo)-1e-9), math.Floor(math.Log2(hi)+1e-9)
		step := math.Max(1, math.Ceil((b-a+1)/8))
		var ts []plot.Tick
		for k := a; k <= b; k++ {
			v := math.Pow(2, k)
			t := plot.Tick{Value: log10(v)}
			if math.Mod(k, step) == 0 {
				t.Label = label(v)
			}
			ts = append(ts, t)
		}
		if len(ts) < 2 { // under one octave: fall back to decimal ticks
			return logTicker(label).Ticks(llo, lhi)
		}
		return ts
	})
}

// niceTicker labels a linear axis every 1, 2 or 5 × 10^k, four to seven
// labels, with a minor tick halfway (gonum's default can label 5, 15, 25).
func niceTicker() plot.Ticker {
	return plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		if !(hi > lo) {
			return []plot.Tick{{Value: lo, Label: strconv.FormatFloat(lo, 'g', 4, 64)}}
		}
		raw := (hi - lo) / 6
		mag := math.Pow(10, math.Floor(math.Log10(raw)))
		step := 10 * mag
		for _, m := range []float64{1, 2, 5} {
			if m*mag >= raw {
				step = m * mag
				break
			}
		}
		decimals := max(0, int(-math.Floor(math.Log10(step))))
		var ts []plot.Tick
		for k := math.Floor(lo / step); k*step <= hi+step*1e-9; k++ {
			v := k * step
			if v >= lo-step*1e-9 {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v+0, 'f', decimals, 64)})
			}
			if mv := v + step/2; mv >= lo && mv <= hi {
				ts = append(ts, plot.Tick{Value: mv})
			}
		}
		return ts
	})
}

// ticker picks the log ticker that suits unit.
func ticker(unit string) plot.Ticker {
	if unit == "bytes" || unit == "bytes/s" {
		return log2Ticker(tickLabel(unit))
	}
	return logTicker(tickLabel(unit))
}

// tickLabel formats an axis tick of unit compactly: "200 µs", "4 MiB", "1.5".
func tickLabel(unit string) func(float64) string {
	return func(v float64) string {
		sc := scaleFor(unit, v)
		n := strconv.FormatFloat(v/sc.div, 'g', 3, 64)
		if sc.name == "" {
			return n
		}
		return n + " " + sc.name
	}
}

// valueAxis sets up axis a for values of unit spanning [lo, hi] (raw
// units, es the series shown) and returns the transform to apply to the
// data (log10, or division into the display unit). A wide range gets a log axis whose ticks carry their own unit
// ("100 µs", "10 ms"), since no single unit reads well across decades;
// otherwise one unit is chosen and named in the axis label.
func valueAxis(a *plot.Axis, unit, prefix string, es []*entry, lo, hi float64) (tr func(float64) float64, log bool) {
	if wide(lo, hi) {
		a.Tick.Marker = ticker(unit)
		a.Label.Text = prefix + quantity(unit) + ", log scale"
		return log10, true
	}
	sc := refScale(unit, es)
	a.Label.Text = prefix + axisLabel(unit, sc)
	return func(v float64) float64 { return v / sc.div }, false
}
