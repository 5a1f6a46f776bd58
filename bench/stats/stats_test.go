package stats

import (
	"math"
	"math/rand"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestPercentilesOfKnownSamples(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {50, 5.5}, {95, 9.55}, {99, 9.91}, {100, 10}} {
		if got := Percentile(s, c.p); !near(got, c.want, 1e-9) {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	sum := Summarize([]float64{3, 1, 2}, 1)
	if sum.N != 3 || sum.Min != 1 || sum.Max != 3 || sum.P50 != 2 || sum.Mean != 2 || sum.Stddev != 1 {
		t.Errorf("summary %+v", sum)
	}
}

// The percentiles of a large sample from a known distribution land on the
// distribution's quantiles.
func TestPercentilesOfAnExponential(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	xs := make([]float64, 200000)
	for i := range xs {
		xs[i] = r.ExpFloat64()
	}
	sum := Summarize(xs[:20000], 1)
	for _, c := range []struct{ got, want float64 }{
		{sum.P50, math.Ln2},       // median of Exp(1)
		{sum.P95, -math.Log(.05)}, // 2.996
		{sum.Mean, 1},
		{sum.Stddev, 1},
	} {
		if !near(c.got, c.want, 0.05*c.want) {
			t.Errorf("got %v, want %v ±5%%", c.got, c.want)
		}
	}
}

// A 95% interval covers the true median in about 95% of experiments.
func TestMedianCICoverage(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	const experiments, n = 300, 41
	covered := 0
	for e := 0; e < experiments; e++ {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = r.NormFloat64()*2 + 10 // median 10
		}
		lo, hi := MedianCI(sorted(xs), 1000, int64(e))
		if lo <= 10 && 10 <= hi {
			covered++
		}
	}
	if rate := float64(covered) / experiments; rate < 0.89 || rate > 0.995 {
		t.Errorf("coverage %.3f, want about 0.95", rate)
	}
}

func TestMannWhitney(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	draw := func(shift float64) []float64 {
		xs := make([]float64, 30)
		for i := range xs {
			xs[i] = r.NormFloat64() + shift
		}
		return xs
	}
	if p := MannWhitney(draw(0), draw(0)); p < 0.01 {
		t.Errorf("same distribution: p = %v", p)
	}
	if p := MannWhitney(draw(0), draw(2)); p > 1e-6 {
		t.Errorf("shifted by 2 sigma: p = %v", p)
	}
	// Textbook case: a = {1..5}, b = {6..10}: U = 0, exact two-sided p = 0.0079;
	// the normal approximation with continuity correction gives 0.0122.
	p := MannWhitney([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10})
	if !near(p, 0.0122, 0.001) {
		t.Errorf("p = %v, want 0.0122", p)
	}
	if p := MannWhitney([]float64{1, 1, 1}, []float64{1, 1, 1}); p != 1 {
		t.Errorf("all ties: p = %v", p)
	}
}
