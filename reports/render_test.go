package reports

import (
	"encoding/csv"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
)

func renderFixture(t *testing.T) (*result.Results, string) {
	t.Helper()
	r := fixture(1, "bench-vm")
	r.Series = append(r.Series, fixedSeries())
	dir := t.TempDir()
	if err := Render(r, dir); err != nil {
		t.Fatalf("Render: %v", err)
	}
	return r, dir
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		t.Fatalf("%s is empty", path)
	}
	return string(b)
}

var (
	imgSrc           = regexp.MustCompile(`<img [^>]*src="([^"]+)"`)
	externalResource = regexp.MustCompile(`(?i)src\s*=\s*["']?(https?:)?//|<link\b|url\(\s*['"]?(https?:)?//|@import`)
)

func TestRenderWritesEveryFileAndChart(t *testing.T) {
	t.Parallel()
	_, dir := renderFixture(t)
	for _, f := range []string{ResultsCSV, SummaryCSV, ReportMD, IndexHTML} {
		readFile(t, filepath.Join(dir, f))
	}
	html := readFile(t, filepath.Join(dir, IndexHTML))
	srcs := imgSrc.FindAllStringSubmatch(html, -1)
	if len(srcs) == 0 {
		t.Fatal("index.html embeds no chart")
	}
	referenced := map[string]bool{}
	for _, m := range srcs {
		svg := m[1]
		if !strings.HasPrefix(svg, "charts/") || !strings.HasSuffix(svg, ".svg") {
			t.Errorf("img src %q: want charts/NAME.svg", svg)
			continue
		}
		referenced[strings.TrimSuffix(strings.TrimPrefix(svg, "charts/"), ".svg")] = true
		if b := readFile(t, filepath.Join(dir, svg)); !strings.Contains(b, "<svg") {
			t.Errorf("%s is not an SVG", svg)
		}
		pngPath := filepath.Join(dir, strings.TrimSuffix(svg, ".svg")+".png")
		if !strings.Contains(html, `href="`+strings.TrimSuffix(svg, ".svg")+`.png"`) {
			t.Errorf("index.html has no PNG link for %s", svg)
		}
		f, err := os.Open(pngPath)
		if err != nil {
			t.Errorf("PNG for %s: %v", svg, err)
			continue
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", pngPath, err)
		} else if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s is %dx%d, too small to read", pngPath, b.Dx(), b.Dy())
		}
	}
	// One chart of each kind the brief asks for, found by data shape.
	for _, want := range []string{
		"cdf-snapshot-ops-prepare", "box-snapshot-ops-prepare", "cdf-snapshot-ops-mount", "box-snapshot-ops-mount",
		"sweep-depth-lookup-depth", "sweep-copy-up-first-write-size", "bars-write-amp-ratio",
		"sweep-density-create-containers", "sweep-density-remove-containers", "sweep-density-space-containers",
		"bars-write-bytes-per-s", "cdf-xattr-storm-setxattr", "box-xattr-storm-setxattr", "bars-inode-use-inodes",
	} {
		if !referenced[want] {
			t.Errorf("no chart %s in index.html (have %v)", want, keys(referenced))
		}
	}
	// Every chart written is shown.
	files, _ := filepath.Glob(filepath.Join(dir, ChartsDir, "*.svg"))
	if len(files) != len(referenced) {
		t.Errorf("%d SVG files but %d charts in index.html", len(files), len(referenced))
	}
	// Links citing the findings' sources may leave the page; nothing the
	// page loads may.
	if m := externalResource.FindString(html); m != "" {
		t.Errorf("index.html loads an external resource (%q); it must be self-contained", m)
	}
	if strings.Contains(html, "<b>attr2</b>") || strings.Contains(html, "<script>\n</script>") || strings.Count(html, "<script>") != 1 {
		t.Error("index.html does not escape data (mount options or notes with markup)")
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func TestRenderCSVRowCounts(t *testing.T) {
	t.Parallel()
	r, dir := renderFixture(t)
	samples := 0
	for _, s := range r.Series {
		samples += len(s.Samples)
	}
	rows := readCSV(t, filepath.Join(dir, ResultsCSV))
	if got := len(rows) - 1; got != samples {
		t.Errorf("results.csv: %d sample rows, want %d", got, samples)
	}
	if h := strings.Join(rows[0], ","); h != "workload,op,target,floor,param,value,cache,unit,machine,sample_index,sample_value" {
		t.Errorf("results.csv header %q", h)
	}
	sum := readCSV(t, filepath.Join(dir, SummaryCSV))
	if got := len(sum) - 1; got != len(r.Series) {
		t.Errorf("summary.csv: %d rows, want one per series (%d)", got, len(r.Series))
	}
	// The last sample of the fixed series round-trips exactly.
	last := rows[len(rows)-1]
	if last[1] != "fixed" || last[9] != "4" || last[10] != "2e+06" {
		t.Errorf("last results.csv row %v, want the fixed series' 5th sample 2e+06", last)
	}
}

func TestRenderMarkdown(t *testing.T) {
	t.Parallel()
	r, dir := renderFixture(t)
	md := readFile(t, filepath.Join(dir, ReportMD))
	for _, want := range []string{
		"| target | op | param | n | median [95% CI] | mean ± σ | p95 | p99 | max | relative |",
		"1.50 ms [", // the fixed series' median
		"## copy-up", "size=4.00 KiB", "(cold)", "× floor:mount/ext4", "floor:cp/ext4",
		"6.1.0-28-amd64", "AMD EPYC 7B13 (2 CPUs)", "4.00 GiB", "go1.26.8", "v0.3.0", "e8e9625", "48.0 ns",
		"/dev/loop4", "overlay2.size=10G", "redirect-on-write / block", "zfs skipped",
		"![snapshot-ops / prepare: latency CDF](charts/cdf-snapshot-ops-prepare.svg)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// Every series' median is in the table.
	for _, s := range r.Series {
		if m := formatValue(s.Unit, s.Summary.P50); !strings.Contains(md, "| "+m+" [") {
			t.Errorf("report.md lacks the median %s of %s", m, s.Key())
		}
	}
}

func TestRenderHandlesEmptyAndOddResults(t *testing.T) {
	t.Parallel()
	if err := Render(nil, t.TempDir()); err == nil {
		t.Error("Render(nil) succeeded")
	}
	empty := &result.Results{Schema: result.Schema}
	if err := Render(empty, t.TempDir()); err != nil {
		t.Errorf("Render(no series): %v", err)
	}
	// No samples, only a summary; zeros and NaN; a single sample.
	odd := fixture(2, "odd")
	odd.Series = odd.Series[:0]
	odd.Series = append(odd.Series,
		result.Series{Workload: "w", Op: "summary-only", Target: "vfs/ext4", Unit: "ns", Summary: fixedSeries().Summary},
		result.Series{Workload: "w", Op: "zeros", Target: "vfs/ext4", Unit: "ns", Samples: []float64{0, 0, 1e3}},
		result.Series{Workload: "w", Op: "nan", Target: "vfs/ext4", Unit: "ratio", Samples: []float64{1, 2}},
		result.Series{Workload: "w", Op: "one", Target: "vfs/ext4", Unit: "bytes/s", Param: "size", Value: 4096, Samples: []float64{1e6}},
	)
	odd.Series[2].Summary.P50 = 0
	if err := Render(odd, t.TempDir()); err != nil {
		t.Errorf("Render(odd series): %v", err)
	}
}

func TestFloorsMatchTheirTargets(t *testing.T) {
	t.Parallel()
	d := newDataset(fixture(1, "h"))
	floors := func(workload, op, target string, value float64) []string {
		for _, e := range d.entries {
			if e.Workload == workload && e.Op == op && e.Target == target && e.Value == value && !e.cold() {
				var out []string
				for _, f := range d.floorsOf(e) {
					out = append(out, f.Target)
				}
				return out
			}
		}
		t.Fatalf("no %s/%s %s", workload, op, target)
		return nil
	}
	for _, c := range []struct {
		workload, op, target string
		value                float64
		want                 string
	}{
		{"snapshot-ops", "cycle", "overlay2/ext4", 0, "floor:mount+fsync/overlay2/ext4"}, // its own, not vfs's
		{"snapshot-ops", "cycle", "vfs/ext4", 0, "floor:mount+fsync/vfs/ext4"},
		{"snapshot-ops", "mount", "vfs/ext4", 0, "floor:mount/ext4"}, // by backing
		{"snapshot-ops", "mount", "btrfs/btrfs", 0, ""},              // no btrfs floor
		{"copy-up", "first-write", "overlay2/ext4", 4096, "floor:cp/ext4 floor:exec-true"},
		{"copy-up", "first-write", "btrfs/btrfs", 4096, "floor:exec-true"}, // unscoped floors apply to all
	} {
		if got := strings.Join(floors(c.workload, c.op, c.target, c.value), " "); got != c.want {
			t.Errorf("floors of %s/%s %s: %q, want %q", c.workload, c.op, c.target, got, c.want)
		}
	}
}
