package stats

import (
	"math"
	"math/rand"
	"testing"
)

func noisy(r *rand.Rand, n int, centre, spread float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = centre + spread*r.NormFloat64()
	}
	return xs
}

// A line with noise is recovered with an interval around the true slope;
// a flat series is not said to grow.
func TestFitTrend(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	xs := []float64{1, 8, 32, 64, 128}
	var line, flat [][]float64
	for _, x := range xs {
		line = append(line, noisy(r, 15, 100+3*x, 5))
		flat = append(flat, noisy(r, 15, 100, 5))
	}
	tr := FitTrend(xs, line, 1000, 1)
	if !near(tr.Slope, 3, 0.1) || tr.CILow > 3 || tr.CIHigh < 3 || !tr.Grows() || tr.Points != 5 {
		t.Errorf("line of slope 3: %+v", tr)
	}
	if tr := FitTrend(xs, flat, 1000, 1); tr.Grows() || tr.CILow > 0 || tr.CIHigh < 0 {
		t.Errorf("flat series: %+v, want an interval around 0", tr)
	}
	// A power law y = x^0.5 fitted on logarithms gives the exponent.
	var logx []float64
	var logy [][]float64
	for _, x := range []float64{4096, 65536, 1 << 20, 16 << 20} {
		logx = append(logx, math.Log(x))
		ys := noisy(r, 10, math.Sqrt(x), 0.01*math.Sqrt(x))
		for i := range ys {
			ys[i] = math.Log(ys[i])
		}
		logy = append(logy, ys)
	}
	if tr := FitTrend(logx, logy, 500, 1); !near(tr.Slope, 0.5, 0.02) {
		t.Errorf("power law: exponent %v, want 0.5", tr.Slope)
	}
	if tr := FitTrend([]float64{1, 2}, [][]float64{{1}, nil}, 100, 1); tr.Points != 1 || !math.IsNaN(tr.Slope) || tr.Grows() {
		t.Errorf("one point: %+v", tr)
	}
}

func TestDiffer(t *testing.T) {
	r := rand.New(rand.NewSource(9))
	a, b := noisy(r, 20, 10, 1), noisy(r, 20, 20, 1)
	sa, sb := Summarize(a, 1), Summarize(b, 1)
	if d := Differ(a, b, sa.CILow, sa.CIHigh, sb.CILow, sb.CIHigh, Alpha); !d.Significant || d.Overlap || d.P > 1e-6 {
		t.Errorf("10 vs 20: %+v", d)
	}
	c := noisy(r, 20, 10.2, 1)
	sc := Summarize(c, 1)
	if d := Differ(a, c, sa.CILow, sa.CIHigh, sc.CILow, sc.CIHigh, Alpha); d.Significant || !d.Overlap {
		t.Errorf("10 vs 10.2: %+v", d)
	}
	// A tiny p-value with touching intervals is still not significant.
	if d := Differ([]float64{1, 2, 3}, []float64{3, 4, 5}, 1, 3, 3, 5, 0.99); d.Significant || !d.Overlap {
		t.Errorf("touching intervals: %+v", d)
	}
	if d := Differ(nil, a, 0, 0, sa.CILow, sa.CIHigh, Alpha); d.Significant || !math.IsNaN(d.P) {
		t.Errorf("empty side: %+v", d)
	}
}
