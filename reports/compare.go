package reports

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

// Row is one series in a comparison of two runs (old = a, new = b).
type Row struct {
	Key      string  `json:"key"`
	Workload string  `json:"workload"`
	Op       string  `json:"op"`
	Target   string  `json:"target"`
	Param    string  `json:"param,omitempty"`
	Value    float64 `json:"value,omitempty"`
	Cache    string  `json:"cache"`
	Unit     string  `json:"unit"`
	// OnlyIn is "old" or "new" for a series measured in one run only; the
	// comparison fields are then unset (NaN).
	OnlyIn string `json:"only_in,omitempty"`
	OldN   int    `json:"old_n"`
	NewN   int    `json:"new_n"`
	// OldMedian and NewMedian are the medians of the raw samples.
	OldMedian float64 `json:"old_median"`
	NewMedian float64 `json:"new_median"`
	Ratio     float64 `json:"ratio"` // new/old
	// P is the two-sided Mann-Whitney U p-value; Significant is P < alpha.
	P           float64 `json:"p"`
	Significant bool    `json:"significant"`
	DeltaPct    float64 `json:"delta_pct"` // (new-old)/old × 100
}

// MarshalJSON writes NaN and ±Inf (no test possible, one-sided rows) as
// null, which encoding/json would otherwise refuse.
func (r Row) MarshalJSON() ([]byte, error) {
	type plain Row
	b, err := json.Marshal(struct {
		plain
		// Same JSON names as Row's, so these shadow the embedded fields.
		OldMedian *float64 `json:"old_median"`
		NewMedian *float64 `json:"new_median"`
		Ratio     *float64 `json:"ratio"`
		P         *float64 `json:"p"`
		DeltaPct  *float64 `json:"delta_pct"`
	}{plain(r), nullable(r.OldMedian), nullable(r.NewMedian), nullable(r.Ratio), nullable(r.P), nullable(r.DeltaPct)})
	if err != nil {
		return nil, err
	}
	return b, nil
}

func nullable(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// Delta is what the text table shows: "~" when the difference is not
// significant at the chosen alpha, else the signed change in percent.
func (r Row) Delta() string {
	switch {
	case r.OnlyIn != "":
		return ""
	case !r.Significant || math.IsNaN(r.DeltaPct):
		return "~"
	}
	return fmt.Sprintf("%+.2f%%", r.DeltaPct)
}

// Name is the series as the text table prints it.
func (r Row) Name() string {
	n := r.Workload + "/" + r.Op + " " + r.Target
	if r.Param != "" {
		n += " " + r.Param + "=" + formatParam(r.Param, r.Value)
	}
	if r.Cache == "cold" {
		n += " (cold)"
	}
	return n
}

// Compare matches the series of a (old) and b (new) by Series.Key and
// tests each pair with Mann-Whitney U. Rows of series in both runs come
// first in a's order, then series only in a, then only in b. A key that
// occurs twice in one run (unmerged duplicates) is matched by occurrence.
func Compare(a, b *result.Results, alpha float64) []Row {
	index := func(r *result.Results) ([]string, map[string]*result.Series) {
		var keys []string
		m := map[string]*result.Series{}
		seen := map[string]int{}
		for i := range r.Series {
			s := &r.Series[i]
			k := s.Key()
			if seen[k]++; seen[k] > 1 {
				k = fmt.Sprintf("%s#%d", k, seen[k])
			}
			keys = append(keys, k)
			m[k] = s
		}
		return keys, m
	}
	if a == nil || b == nil {
		return nil
	}
	var rows []Row
	ak, am := index(a)
	bk, bm := index(b)
	var onlyOld, onlyNew []Row
	for _, k := range ak {
		o := am[k]
		n, both := bm[k]
		if !both {
			onlyOld = append(onlyOld, oneSided(k, o, "old"))
			continue
		}
		rows = append(rows, compareSeries(k, o, n, alpha))
	}
	for _, k := range bk {
		if _, both := am[k]; !both {
			onlyNew = append(onlyNew, oneSided(k, bm[k], "new"))
		}
	}
	return append(append(rows, onlyOld...), onlyNew...)
}

func baseRow(k string, s *result.Series) Row {
	return Row{Key: k, Workload: s.Workload, Op: s.Op, Target: s.Target, Param: s.Param, Value: s.Value,
		Cache: s.Cache, Unit: s.Unit, OldMedian: math.NaN(), NewMedian: math.NaN(), Ratio: math.NaN(),
		P: math.NaN(), DeltaPct: math.NaN()}
}

func oneSided(k string, s *result.Series, side string) Row {
	r := baseRow(k, s)
	r.OnlyIn = side
	if side == "old" {
		r.OldN, r.OldMedian = len(s.Samples), medianOf(s)
	} else {
		r.NewN, r.NewMedian = len(s.Samples), medianOf(s)
	}
	return r
}

func medianOf(s *result.Series) float64 {
	if xs := finite(s.Samples); len(xs) > 0 {
		return stats.Median(xs)
	}
	if s.Summary.N > 0 {
		return s.Summary.P50
	}
	return math.NaN()
}

func compareSeries(k string, o, n *result.Series, alpha float64) Row {
	r := baseRow(k, o)
	r.OldN, r.NewN = len(o.Samples), len(n.Samples)
	r.OldMedian, r.NewMedian = medianOf(o), medianOf(n)
	if r.OldMedian != 0 {
		r.Ratio = r.NewMedian / r.OldMedian
		r.DeltaPct = (r.Ratio - 1) * 100
	}
	if xo, xn := finite(o.Samples), finite(n.Samples); len(xo) > 0 && len(xn) > 0 {
		r.P = stats.MannWhitney(xo, xn)
	}
	r.Significant = !math.IsNaN(r.P) && r.P < alpha
	return r
}

// WriteCompare prints rows as a benchstat-like table: old and new median,
// new/old, p-value with sample counts, and the change ("~" when not
// significant at alpha). Series in only one run are listed after.
func WriteCompare(w io.Writer, rows []Row, alpha float64, oldName, newName string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "series\told: %s\tnew: %s\tnew/old\tp (n)\tdelta\t\n", oldName, newName)
	var old, nu []Row
	for _, r := range rows {
		switch r.OnlyIn {
		case "old":
			old = append(old, r)
			continue
		case "new":
			nu = append(nu, r)
			continue
		}
		p := "n/a"
		if !math.IsNaN(r.P) {
			p = fmt.Sprintf("%.3f", r.P)
		}
		ratio := "n/a"
		if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) {
			ratio = fmt.Sprintf("%.3f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s (n=%d+%d)\t%s\t\n", r.Name(), formatValue(r.Unit, r.OldMedian),
			formatValue(r.Unit, r.NewMedian), ratio, p, r.OldN, r.NewN, r.Delta())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nMann-Whitney U, alpha=%g: \"~\" means no significant difference.\n", alpha)
	for _, side := range []struct {
		name string
		rows []Row
	}{{oldName, old}, {newName, nu}} {
		if len(side.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\nonly in %s:\n", side.name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range side.rows {
			m, n := r.OldMedian, r.OldN
			if r.OnlyIn == "new" {
				m, n = r.NewMedian, r.NewN
			}
			fmt.Fprintf(tw, "  %s\tmedian %s\t(n=%d)\n", r.Name(), formatValue(r.Unit, m), n)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// CompareSummary counts significant changes, for a one-line verdict.
func CompareSummary(rows []Row) string {
	var both, sig, onlyOld, onlyNew int
	for _, r := range rows {
		switch {
		case r.OnlyIn == "old":
			onlyOld++
		case r.OnlyIn == "new":
			onlyNew++
		default:
			both++
			if r.Significant {
				sig++
			}
		}
	}
	parts := []string{fmt.Sprintf("%d series compared, %d changed significantly", both, sig)}
	if onlyOld+onlyNew > 0 {
		parts = append(parts, fmt.Sprintf("%d only in old, %d only in new", onlyOld, onlyNew))
	}
	return strings.Join(parts, "; ")
}
