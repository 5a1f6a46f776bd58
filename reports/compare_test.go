package reports

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

func findSeries(t *testing.T, r *result.Results, workload, op, target string) *result.Series {
	t.Helper()
	for i := range r.Series {
		s := &r.Series[i]
		if s.Workload == workload && s.Op == op && s.Target == target && s.Cache == "warm" {
			return s
		}
	}
	t.Fatalf("fixture has no %s/%s %s", workload, op, target)
	return nil
}

func findRow(t *testing.T, rows []Row, key string) Row {
	t.Helper()
	for _, r := range rows {
		if r.Key == key {
			return r
		}
	}
	t.Fatalf("no row %s", key)
	return Row{}
}

func TestCompare(t *testing.T) {
	t.Parallel()
	old, nu := fixture(1, "h"), fixture(1, "h")

	// A 30% slower prepare must be called significant...
	shifted := findSeries(t, nu, "snapshot-ops", "prepare", "overlay2/ext4")
	for i := range shifted.Samples {
		shifted.Samples[i] *= 1.3
	}
	// ...while fresh draws from the same distribution (a rerun where
	// nothing changed) must not.
	same := findSeries(t, nu, "snapshot-ops", "commit", "vfs/ext4")
	rng := rand.New(rand.NewSource(7))
	base := findSeries(t, old, "snapshot-ops", "commit", "vfs/ext4")
	m := stats.Median(base.Samples)
	fresh := newFixture(7, "h")
	fresh.rng = rng
	same.Samples = fresh.lognormal(len(base.Samples), m, 0.25)
	// One series dropped, one added.
	dropped := nu.Series[len(nu.Series)-1]
	nu.Series = nu.Series[:len(nu.Series)-1]
	added := result.Series{Workload: "new-wl", Op: "x", Target: "vfs/ext4", Cache: "warm", Unit: "ns", Samples: []float64{1, 2, 3}}
	nu.Series = append(nu.Series, added)

	rows := Compare(old, nu, 0.05)
	r := findRow(t, rows, shifted.Key())
	if !r.Significant || r.Delta() == "~" || !strings.HasPrefix(r.Delta(), "+") || r.Ratio < 1.15 || r.Ratio > 1.45 {
		t.Errorf("shifted series: %+v delta %q; want significant, about +30%%", r, r.Delta())
	}
	r = findRow(t, rows, same.Key())
	if r.Significant || r.Delta() != "~" {
		t.Errorf("same-distribution series: p=%g delta %q; want ~", r.P, r.Delta())
	}
	unchanged := findSeries(t, nu, "snapshot-ops", "mount", "btrfs/btrfs")
	if r := findRow(t, rows, unchanged.Key()); r.P < 0.99 || r.Delta() != "~" || r.Ratio != 1 {
		t.Errorf("identical samples: %+v", r)
	}
	if r := findRow(t, rows, dropped.Key()); r.OnlyIn != "old" {
		t.Errorf("dropped series: OnlyIn %q, want old", r.OnlyIn)
	}
	if r := findRow(t, rows, added.Key()); r.OnlyIn != "new" {
		t.Errorf("added series: OnlyIn %q, want new", r.OnlyIn)
	}
	if len(rows) != len(old.Series)+1 {
		t.Errorf("%d rows, want %d (every series of old plus the added one)", len(rows), len(old.Series)+1)
	}

	var out bytes.Buffer
	if err := WriteCompare(&out, rows, 0.05, "A.json", "B.json"); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"old: A.json", "new: B.json", "snapshot-ops/prepare overlay2/ext4", " ~", "only in A.json:", "only in B.json:", "new-wl/x vfs/ext4", "(n=30+30)"} {
		if !strings.Contains(text, want) {
			t.Errorf("compare table lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(text, findRow(t, rows, shifted.Key()).Delta()) {
		t.Errorf("compare table lacks the shifted series' change")
	}
	// JSON survives NaN fields of one-sided rows.
	b, err := json.Marshal(rows)
	if err != nil {
		t.Fatalf("rows as JSON: %v", err)
	}
	if !strings.Contains(string(b), `"only_in":"new"`) || !strings.Contains(string(b), `"p":null`) {
		t.Errorf("JSON rows: want only_in and null p for one-sided rows")
	}
	if s := CompareSummary(rows); !strings.Contains(s, "changed significantly") {
		t.Errorf("summary %q", s)
	}
}
