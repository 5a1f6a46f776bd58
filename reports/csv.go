package reports

import (
	"encoding/csv"
	"math"
	"os"
	"strconv"
)

// The series columns shared by both CSV files, so a spreadsheet can join
// samples to their summary.
func seriesColumns() []string {
	return []string{"workload", "op", "target", "floor", "param", "value", "cache", "unit", "machine"}
}

func seriesCells(e *entry) []string {
	return []string{e.Workload, e.Op, e.Target, strconv.FormatBool(e.Floor), e.Param,
		num(e.Value), e.Cache, e.Unit, e.machine}
}

// num writes a float exactly (shortest round-trip form); NaN and ±Inf
// become empty cells, which CSV readers treat as missing.
func num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// writeSamplesCSV writes one row per raw sample (long format).
func writeSamplesCSV(d *dataset, path string) error {
	return writeCSV(path, func(w *csv.Writer) error {
		if err := w.Write(append(seriesColumns(), "sample_index", "sample_value")); err != nil {
			return err
		}
		for _, e := range d.entries {
			base := seriesCells(e)
			for i, v := range e.Samples {
				if err := w.Write(append(base[:len(base):len(base)], strconv.Itoa(i), num(v))); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// writeSummaryCSV writes one row per series with its Summary.
func writeSummaryCSV(d *dataset, path string) error {
	return writeCSV(path, func(w *csv.Writer) error {
		head := append(seriesColumns(), "n", "min", "max", "mean", "stddev", "p50", "p95", "p99", "ci_low", "ci_high")
		if err := w.Write(head); err != nil {
			return err
		}
		for _, e := range d.entries {
			s := e.sum
			row := append(seriesCells(e), strconv.Itoa(s.N), num(s.Min), num(s.Max), num(s.Mean),
				num(s.Stddev), num(s.P50), num(s.P95), num(s.P99), num(s.CILow), num(s.CIHigh))
			if err := w.Write(row); err != nil {
				return err
			}
		}
		return nil
	})
}

func writeCSV(path string, fill func(*csv.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	w := csv.NewWriter(f)
	if err := fill(w); err != nil {
		return err
	}
	w.Flush()
	return w.Error()
}
