package reports

import (
	"math"
	"math/rand"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/bench/stats"
)

// knownRanking builds results whose answers are known by construction:
// fast, slow and tied drivers with tight log-normal noise. swap turns the
// create ranking around, to prove the sentences follow the data.
func knownRanking(swap bool) *result.Results {
	rng := rand.New(rand.NewSource(42))
	noise := func(n int, m, sigma float64) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = m * math.Exp(sigma*rng.NormFloat64())
		}
		return xs
	}
	date := time.Date(2026, 12, 4, 8, 0, 0, 0, time.UTC)
	r := &result.Results{
		Schema: result.Schema, Profile: "quick", Started: date, Finished: date.Add(5 * time.Minute),
		Machines: []result.Environment{{Hostname: "host", Kernel: "6.18", CPU: "Intel Xeon", CPUs: 2}},
		Targets: []result.Target{
			{ID: "overlay2/ext4", Driver: "overlay2", Backing: "ext4", Loop: true, Granularity: "file"},
			{ID: "overlay/ext4", Driver: "overlay", Backing: "ext4", Loop: true, Granularity: "file"},
			{ID: "overlay2/xfs", Driver: "overlay2", Backing: "xfs", Loop: true, Granularity: "block",
				Notes: []string{"copy-up clones extents on xfs (reflink): a first write copies the file's metadata, not its data"}},
			{ID: "btrfs/btrfs", Driver: "btrfs", Backing: "btrfs", Loop: true, Granularity: "block"},
			{ID: "vfs/ext4", Driver: "vfs", Backing: "ext4", Loop: true, Granularity: "snapshot"},
		},
		Notes: []string{"skipped devicemapper on ext4: devicemapper on ext4: unavailable: the kernel has no device-mapper thin-pool"},
	}
	add := func(s result.Series) {
		if s.Cache == "" {
			s.Cache = "warm"
		}
		s.Summary = stats.Summarize(s.Samples, 1)
		r.Series = append(r.Series, s)
	}
	// create: overlay2 1 ms < btrfs 2 ms < vfs 6 ms (or vfs fastest).
	create := map[string]float64{"overlay2/ext4": 1e6, "btrfs/btrfs": 2e6, "vfs/ext4": 6e6}
	if swap {
		create["overlay2/ext4"], create["vfs/ext4"] = 6e6, 1e6
	}
	for _, id := range []string{"overlay2/ext4", "btrfs/btrfs", "vfs/ext4"} {
		add(result.Series{Workload: "snapshot-ops", Op: "prepare", Target: id, Unit: "ns", Samples: noise(20, create[id], 0.05)})
	}
	// mount: overlay2 and overlay indistinguishable; overlay2's median is
	// set a hair lower by construction of the samples.
	base := noise(20, 100e3, 0.2)
	shifted := make([]float64, len(base))
	for i, x := range base {
		shifted[i] = x * 1.01
	}
	add(result.Series{Workload: "snapshot-ops", Op: "mount", Target: "overlay2/ext4", Unit: "ns", Samples: base})
	add(result.Series{Workload: "snapshot-ops", Op: "mount", Target: "overlay/ext4", Unit: "ns", Samples: shifted})
	// depth: overlay2 grows 10 µs a layer, overlay stays flat.
	for _, depth := range []float64{1, 8, 32, 64, 128} {
		add(result.Series{Workload: "depth", Op: "prepare+mount", Target: "overlay2/ext4", Param: "depth", Value: depth, Unit: "ns",
			Samples: noise(10, 500e3+10e3*depth, 0.03)})
		add(result.Series{Workload: "depth", Op: "prepare+mount", Target: "overlay/ext4", Param: "depth", Value: depth, Unit: "ns",
			Samples: noise(10, 600e3, 0.03)})
	}
	// copy-up: whole-file copies grow with size; clones and btrfs do not.
	for _, size := range []float64{4096, 65536, 1 << 20, 16 << 20, 64 << 20} {
		add(result.Series{Workload: "copy-up", Op: "append-1b", Target: "overlay2/ext4", Param: "size", Value: size, Unit: "ns",
			Samples: noise(10, 50e3+size, 0.05)}) // about 1 ns a byte
		add(result.Series{Workload: "copy-up", Op: "append-1b", Target: "overlay2/xfs", Param: "size", Value: size, Unit: "ns",
			Samples: noise(10, 70e3, 0.05)})
		add(result.Series{Workload: "copy-up", Op: "append-1b", Target: "btrfs/btrfs", Param: "size", Value: size, Unit: "ns",
			Samples: noise(10, 30e3, 0.05)})
		add(result.Series{Workload: "copy-up", Op: "append-1b", Target: "floor:cp/ext4", Floor: true, Param: "size", Value: size, Unit: "ns",
			Samples: noise(10, 1e6+size, 0.05)})
	}
	// write amplification: btrfs lowest, overlay2 whole-file highest.
	for id, m := range map[string]float64{"btrfs/btrfs": 1.2, "overlay2/ext4": 4096, "vfs/ext4": 9} {
		add(result.Series{Workload: "write-amp", Op: "append-1b", Target: id, Unit: "ratio", Samples: noise(5, m, 0.01)})
	}
	// density: one sample a series, so nothing can be significant.
	for id, m := range map[string]float64{"overlay2/ext4": 24e3, "btrfs/btrfs": 47e3} {
		for _, n := range []float64{1, 100} {
			add(result.Series{Workload: "density", Op: "space-per-container", Target: id, Param: "containers", Value: n, Unit: "bytes",
				Samples: []float64{m * (1 + n/1000)}})
		}
	}
	return r
}

func answerOf(t *testing.T, f findingsReport, id string) finding {
	t.Helper()
	for _, x := range f.Findings {
		if x.ID == id {
			return x
		}
	}
	t.Fatalf("no %s finding in %+v", id, f)
	return finding{}
}

func mustContain(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

func mustFindings(t *testing.T, r *result.Results) findingsReport {
	t.Helper()
	f, err := findings(newDataset(r))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFindingsFollowTheData(t *testing.T) {
	t.Parallel()
	f := mustFindings(t, knownRanking(false))

	create := strings.Join(answerOf(t, f, "create").Sentences, " ")
	mustContain(t, "create", create, "overlay2/ext4 creates fastest: ", "the runner-up, btrfs/btrfs at ",
		"significant (Mann-Whitney p < 0.001; the 95% intervals do not overlap)", "Worst of 3: vfs/ext4 at ")
	if strings.Contains(create, "not significant") {
		t.Errorf("create: clearly separated medians called not significant:\n%s", create)
	}
	swapped := strings.Join(answerOf(t, mustFindings(t, knownRanking(true)), "create").Sentences, " ")
	mustContain(t, "create (swapped)", swapped, "vfs/ext4 creates fastest", "Worst of 3: overlay2/ext4")

	// Overlapping intervals: named best by median only, and "not significant".
	mount := strings.Join(answerOf(t, f, "mount").Sentences, " ")
	mustContain(t, "mount", mount, "overlay2/ext4 has the best median", "not told apart", "not significant (the 95% intervals overlap")
	if strings.Contains(mount, "mounts fastest") {
		t.Errorf("mount: a tie called a win:\n%s", mount)
	}

	copyUp := strings.Join(answerOf(t, f, "copy-up").Sentences, " ")
	mustContain(t, "copy-up", copyUp, "File-granular targets", "overlay2/ext4 grows significantly, ∝ size^0.",
		"overlay2/xfs stays flat", "btrfs/btrfs stays flat",
		"At 64.0 MiB the fastest block-granular target, btrfs/btrfs", "faster than the fastest file-granular one, overlay2/ext4")
	if strings.Index(copyUp, "File-granular") > strings.Index(copyUp, "Block-granular") {
		t.Error("copy-up: block-granular targets before file-granular ones")
	}
	if strings.Contains(copyUp, "floor:") {
		t.Error("copy-up: a floor ranked among the drivers")
	}

	depth := strings.Join(answerOf(t, f, "depth").Sentences, " ")
	mustContain(t, "depth", depth, "grows least on overlay/ext4", "most on overlay2/ext4, which grows significantly, +",
		"per layer", "The difference in slope between them is significant")

	amp := strings.Join(answerOf(t, f, "write-amp").Sentences, " ")
	mustContain(t, "write-amp", amp, "append-1b: btrfs/btrfs amplifies least: ", "Worst of 3: overlay2/ext4 at ", "significant")

	density := strings.Join(answerOf(t, f, "density").Sentences, " ")
	mustContain(t, "density", density, "With 100 containers: overlay2/ext4 has the best median", "not significant (a single sample")

	if len(f.NotMeasured) != 1 || f.NotMeasured[0] != "remove" {
		t.Errorf("not measured: %v, want [remove]", f.NotMeasured)
	}
}

func TestFindingsSetAgainstAnchors(t *testing.T) {
	t.Parallel()
	f := mustFindings(t, knownRanking(false))
	check := func(question, id string) anchorCheck {
		t.Helper()
		for _, a := range answerOf(t, f, question).Anchors {
			if a.Anchor.ID == id {
				return a
			}
		}
		t.Fatalf("%s: no check against %s", question, id)
		return anchorCheck{}
	}
	// overlay2 and devicemapper are not both here: the run's note says why.
	c := check("create", "containerd-benchsuite")
	if c.Verdict != verdictNotMeasured || !strings.Contains(c.Text, "no device-mapper thin-pool") || !strings.Contains(c.Text, "65.62×") {
		t.Errorf("create vs containerd: %s: %s", c.Verdict, c.Text)
	}
	// overlay's flat line beats overlay2's growing one at 64 layers.
	c = check("depth", "moby-pr-25824")
	if c.Verdict != verdictAgrees || !strings.Contains(c.Text, "Here at depth=64: overlay/ext4") {
		t.Errorf("depth vs moby: %s: %s", c.Verdict, c.Text)
	}
	// A tie is inconclusive, not a disagreement.
	if c := check("mount", "moby-pr-25824"); c.Verdict != verdictInconclusive {
		t.Errorf("mount vs moby: %s: %s", c.Verdict, c.Text)
	}
	// overlay2 on xfs clones instead of copying: the disagreement says so.
	c = check("copy-up", "docker-docs-storage-drivers")
	if c.Verdict != verdictDisagrees {
		t.Errorf("copy-up vs docs: %s: %s", c.Verdict, c.Text)
	}
	mustContain(t, "copy-up vs docs", c.Text, "overlay2/ext4 grows significantly", "agrees",
		"overlay2/xfs stays flat", "disagrees; likely because overlay2/xfs: copy-up clones extents on xfs (reflink)",
		"overlay, aufs not measured here")
}

func TestLikelyReasons(t *testing.T) {
	t.Parallel()
	r := &result.Results{
		Schema:   result.Schema,
		Machines: []result.Environment{{Hostname: "host", CPU: "Intel Xeon"}, {Hostname: "guest", CPU: "QEMU TCG CPU version 2.5+"}},
		Targets: []result.Target{
			{ID: "zfs/fuse.zfs", Driver: "zfs", Backing: "fuse.zfs", Loop: true},
			{ID: "guest/devicemapper/ext4", Driver: "devicemapper", Backing: "ext4", Machine: 1},
		},
		Series: []result.Series{
			{Workload: "w", Op: "o", Target: "zfs/fuse.zfs", Unit: "ns", Samples: []float64{1}},
			{Workload: "w", Op: "o", Target: "guest/devicemapper/ext4", Unit: "ns", Samples: []float64{1}, Machine: 1},
		},
	}
	d := newDataset(r)
	got := strings.Join(likelyReasons(d, d.entries...), "\n")
	mustContain(t, "reasons", got, "zfs-fuse is ZFS in a userspace daemon", "zfs/fuse.zfs sits on a loop device",
		"guest is a qemu guest under TCG emulation")
	if strings.Contains(got, "guest/devicemapper/ext4 sits on a loop") {
		t.Errorf("a target not on a loop device said to be:\n%s", got)
	}
}

// Every anchor cites a source, and every published ranking follows from
// the figures quoted beside it.
func TestAnchorsAreSourced(t *testing.T) {
	t.Parallel()
	as, err := loadAnchors()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, q := range questions() {
		known[q.id] = true
	}
	ids := map[string]bool{}
	for _, a := range as {
		if u, err := url.Parse(a.URL); err != nil || u.Scheme != "https" || u.Host == "" {
			t.Errorf("%s: URL %q", a.ID, a.URL)
		}
		if a.ID == "" || ids[a.ID] || a.Source == "" || a.Published == "" || a.Setup == "" || a.Caveat == "" || len(a.Claims) == 0 {
			t.Errorf("anchor %q lacks a field or repeats an id: %+v", a.ID, a)
		}
		ids[a.ID] = true
		for _, f := range a.Figures {
			if f.Value <= 0 || f.Quote == "" || f.Unit == "" {
				t.Errorf("%s: figure %+v", a.ID, f)
			}
		}
		for _, c := range a.Claims {
			if !known[c.Question] || (c.Kind != "faster" && c.Kind != "grows") || c.Says == "" || len(c.Drivers) == 0 || c.Workload == "" {
				t.Errorf("%s: claim %+v", a.ID, c)
			}
			if c.Kind == "faster" && len(c.Drivers) != 2 {
				t.Errorf("%s: a faster claim names %d drivers", a.ID, len(c.Drivers))
			}
			if len(c.Values) == 0 {
				continue
			}
			if len(c.Values) != len(c.Drivers) || (c.Kind == "faster" && c.Values[0] >= c.Values[1]) {
				t.Errorf("%s: claim values %v do not support %v faster", a.ID, c.Values, c.Drivers)
			}
			for i, v := range c.Values {
				found := false
				for _, f := range a.Figures {
					found = found || (f.Driver == c.Drivers[i] && f.Value == v)
				}
				if !found {
					t.Errorf("%s: claim value %v for %s is not among the quoted figures", a.ID, v, c.Drivers[i])
				}
			}
		}
	}
}

// Both reports open with the findings, ahead of the run's tables.
func TestReportsOpenWithFindings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := Render(knownRanking(false), dir); err != nil {
		t.Fatal(err)
	}
	md := readFile(t, filepath.Join(dir, ReportMD))
	if !strings.HasPrefix(md, "# layerlab benchmark report\n\n## Findings\n") {
		t.Errorf("report.md does not open with the findings:\n%.300s", md)
	}
	for _, later := range []string{"## Run", "## snapshot-ops"} {
		if i := strings.Index(md, later); i < strings.Index(md, "overlay2/ext4 creates fastest") {
			t.Errorf("report.md: %q before the findings", later)
		}
	}
	mustContain(t, "report.md", md, "### Published results the findings are set against",
		"[moby-pr-25824](https://github.com/moby/moby/pull/25824)", "- Published, agrees [moby-pr-25824]")
	html := readFile(t, filepath.Join(dir, IndexHTML))
	f, tables := strings.Index(html, `<section id="findings">`), strings.Index(html, `<section id="wl-`)
	if f < 0 || f > tables || f > strings.Index(html, `<ul class="meta">`) {
		t.Errorf("index.html does not open with the findings (findings at %d, first table at %d)", f, tables)
	}
	mustContain(t, "index.html", html, `<div class="finding" id="finding-create">`, "overlay2/ext4 creates fastest",
		`<a href="https://github.com/containerd/containerd/blob/main/contrib/aws/snapshotter_bench_readme.md">containerd-benchsuite</a>`)
}
