// Package stats summarizes benchmark samples the way layerlab reports
// them: order statistics, mean and standard deviation, a bootstrap
// confidence interval of the median, the Mann-Whitney U test that
// `layerlab bench compare` uses to call a difference significant, the
// verdict the report's findings give on two medians (Differ), and the
// slope of a median against a swept variable with its interval (FitTrend).
package stats

import (
	"math"
	"math/rand"
	"sort"
)

// Summary describes one series of samples.
type Summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
	P50    float64 `json:"p50"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	// CILow and CIHigh bound the median with 95% confidence (percentile
	// bootstrap).
	CILow  float64 `json:"ci_low"`
	CIHigh float64 `json:"ci_high"`
}

// Bootstrap resamples used for the confidence interval.
const Bootstrap = 2000

// Summarize computes the summary of xs; seed fixes the bootstrap so a
// report re-rendered from the same samples shows the same interval.
func Summarize(xs []float64, seed int64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := sorted(xs)
	sum := Summary{N: len(s), Min: s[0], Max: s[len(s)-1], P50: Percentile(s, 50), P95: Percentile(s, 95), P99: Percentile(s, 99)}
	var total float64
	for _, x := range s {
		total += x
	}
	sum.Mean = total / float64(len(s))
	if len(s) > 1 {
		var ss float64
		for _, x := range s {
			ss += (x - sum.Mean) * (x - sum.Mean)
		}
		sum.Stddev = math.Sqrt(ss / float64(len(s)-1))
	}
	sum.CILow, sum.CIHigh = MedianCI(s, Bootstrap, seed)
	return sum
}

func sorted(xs []float64) []float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s
}

// Percentile returns the p-th percentile of sorted samples s by linear
// interpolation between closest ranks (numpy's default, type 7).
func Percentile(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s) == 1 {
		return s[0]
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	frac := rank - float64(lo)
	return s[lo] + frac*(s[lo+1]-s[lo])
}

// Median returns the median of unsorted xs.
func Median(xs []float64) float64 { return Percentile(sorted(xs), 50) }

// MedianCI is the percentile-bootstrap 95% confidence interval of the
// median of sorted samples s.
func MedianCI(s []float64, resamples int, seed int64) (float64, float64) {
	if len(s) < 2 {
		if len(s) == 1 {
			return s[0], s[0]
		}
		return math.NaN(), math.NaN()
	}
	r := rand.New(rand.NewSource(seed))
	medians := make([]float64, resamples)
	buf := make([]float64, len(s))
	for i := range medians {
		for j := range buf {
			buf[j] = s[r.Intn(len(s))]
		}
		sort.Float64s(buf)
		medians[i] = Percentile(buf, 50)
	}
	sort.Float64s(medians)
	return Percentile(medians, 2.5), Percentile(medians, 97.5)
}

// MannWhitney returns the two-sided p-value of the Mann-Whitney U test
// that a and b come from the same distribution, by the normal
// approximation with tie correction (fine from about 8 samples a side).
func MannWhitney(a, b []float64) float64 {
	n1, n2 := float64(len(a)), float64(len(b))
	if n1 == 0 || n2 == 0 {
		return math.NaN()
	}
	type obs struct {
		v     float64
		first bool
	}
	all := make([]obs, 0, len(a)+len(b))
	for _, x := range a {
		all = append(all, obs{x, true})
	}
	for _, x := range b {
		all = append(all, obs{x, false})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v < all[j].v })
	var r1, tieTerm float64
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].v == all[i].v {
			j++
		}
		rank := float64(i+j+1) / 2 // average of ranks i+1..j
		for k := i; k < j; k++ {
			if all[k].first {
				r1 += rank
			}
		}
		t := float64(j - i)
		tieTerm += t*t*t - t
		i = j
	}
	u1 := r1 - n1*(n1+1)/2
	n := n1 + n2
	mean := n1 * n2 / 2
	variance := n1 * n2 / 12 * ((n + 1) - tieTerm/(n*(n-1)))
	if variance <= 0 {
		return 1
	}
	z := (math.Abs(u1-mean) - 0.5) / math.Sqrt(variance) // continuity correction
	if z < 0 {
		z = 0
	}
	return math.Erfc(z / math.Sqrt2)
}
