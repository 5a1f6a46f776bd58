package stats

import (
	"math"
	"math/rand"
	"sort"
)

// Alpha is the significance level reports use for their verdicts.
const Alpha = 0.05

// Difference is the verdict on whether two series' medians differ.
type Difference struct {
	// P is the two-sided Mann-Whitney U p-value (NaN when a side is empty).
	P float64
	// Overlap says the two 95% confidence intervals of the medians overlap.
	Overlap bool
	// Significant needs both P < alpha and disjoint intervals: a report
	// that prints the intervals next to the verdict must never call a
	// difference significant that the reader sees the intervals deny.
	Significant bool
}

// Differ tests samples a and b, whose medians have the 95% intervals
// [aLo, aHi] and [bLo, bHi] (from their Summary).
func Differ(a, b []float64, aLo, aHi, bLo, bHi, alpha float64) Difference {
	d := Difference{P: MannWhitney(a, b), Overlap: aLo <= bHi && bLo <= aHi}
	d.Significant = !math.IsNaN(d.P) && d.P < alpha && !d.Overlap
	return d
}

// Trend is the least-squares slope of a series' median against a swept
// variable, with a 95% percentile-bootstrap interval.
type Trend struct {
	Slope, CILow, CIHigh float64
	// Points is how many swept values had samples.
	Points int
}

// Grows says the slope is positive with 95% confidence.
func (t Trend) Grows() bool { return t.Points >= 2 && t.CILow > 0 }

// FitTrend fits y = a + Slope·x through the medians of ys[i] at xs[i].
// The interval comes from resampling each point's samples on its own
// (they were measured independently) and refitting, so it reflects the
// noise of every point rather than the scatter around a line the data may
// not follow. Points without samples are left out. Callers wanting a
// power law pass logarithms of both.
func FitTrend(xs []float64, ys [][]float64, resamples int, seed int64) Trend {
	var px []float64
	var py [][]float64
	for i := range xs {
		if i < len(ys) && len(ys[i]) > 0 && !math.IsNaN(xs[i]) && !math.IsInf(xs[i], 0) {
			px = append(px, xs[i])
			py = append(py, sorted(ys[i]))
		}
	}
	t := Trend{Slope: math.NaN(), CILow: math.NaN(), CIHigh: math.NaN(), Points: len(px)}
	if len(px) < 2 {
		return t
	}
	meds := make([]float64, len(py))
	for i, s := range py {
		meds[i] = Percentile(s, 50)
	}
	t.Slope = leastSquares(px, meds)
	if math.IsNaN(t.Slope) {
		return t
	}
	r := rand.New(rand.NewSource(seed))
	slopes := make([]float64, 0, resamples)
	for k := 0; k < resamples; k++ {
		for i, s := range py {
			buf := make([]float64, len(s))
			for j := range buf {
				buf[j] = s[r.Intn(len(s))]
			}
			sort.Float64s(buf)
			meds[i] = Percentile(buf, 50)
		}
		if m := leastSquares(px, meds); !math.IsNaN(m) {
			slopes = append(slopes, m)
		}
	}
	sort.Float64s(slopes)
	t.CILow, t.CIHigh = Percentile(slopes, 2.5), Percentile(slopes, 97.5)
	return t
}

// leastSquares is the ordinary least-squares slope of y on x (NaN when
// every x is the same).
func leastSquares(x, y []float64) float64 {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var sxy, sxx float64
	for i := range x {
		sxy += (x[i] - mx) * (y[i] - my)
		sxx += (x[i] - mx) * (x[i] - mx)
	}
	if sxx == 0 {
		return math.NaN()
	}
	return sxy / sxx
}
