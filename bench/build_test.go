package bench

import (
	"archive/tar"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
)

// buildLayerlabd builds layerlabd into a temporary directory put first on
// PATH, where the workloads' findBinary finds it.
func buildLayerlabd(t *testing.T) {
	t.Helper()
	bin := t.TempDir()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", filepath.Join(bin, "layerlabd"), "../cmd/layerlabd").CombinedOutput(); err != nil {
		t.Fatalf("go build layerlabd: %v\n%s", err, out)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestBuildWorkload runs the build workload once with few samples on
// overlay2 (ext4 and xfs) against a layerlabd built for the test: every op
// records its samples, a warm rebuild beats a --no-cache one, the image
// holds the 50 MiB context, and nothing is left mounted, attached or in a
// cgroup.
func TestBuildWorkload(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the build workload runs layerlabd and containers: needs root")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		feature.Skip(t, feature.Busybox, "/bin/busybox: %v (make setup installs busybox-static)", err)
	}
	buildLayerlabd(t)
	scratch := t.TempDir()
	before := hostState(t, scratch)

	p, err := ProfileNamed("runtime")
	if err != nil {
		t.Fatal(err)
	}
	p.N, p.Warmup, p.Build.NoCache = 2, 1, 2
	p.Workloads = []string{"build"}
	reg := drivers.NewRegistry(vfs.Factory(), overlay.Overlay2Factory())
	res, err := Run(context.Background(), Config{Registry: reg, Profile: p, Drivers: []string{"overlay2"}, Scratch: scratch, Seed: 1, Version: "test"})
	if err != nil {
		t.Fatalf("%v\nnotes: %v", err, res.Notes)
	}
	t.Logf("notes: %v", res.Notes)
	if !strings.Contains(strings.Join(res.Notes, "\n"), "cached-build is a warm-cache rebuild") {
		t.Errorf("no note says what the build ops include: %v", res.Notes)
	}
	series := map[string]result.Series{}
	for _, s := range res.Series {
		if s.Workload == "build" {
			series[s.Op+" "+s.Target] = s
		}
	}
	want := map[string]int{"first-build": 1, "cached-build": p.N, "cli-cached-build": p.N, "nocache-build": p.Build.NoCache, "image-bytes": p.Build.NoCache, "cache-bytes": p.Build.NoCache, "cache-df-bytes": p.Build.NoCache, "prune-freed-bytes": p.Build.NoCache}
	for _, target := range []string{"overlay2/ext4", "overlay2/xfs"} {
		for op, n := range want {
			if s := series[op+" "+target]; len(s.Samples) != n {
				t.Errorf("%s on %s: %d samples, want %d", op, target, len(s.Samples), n)
			}
		}
		cached, nocache := series["cached-build "+target].Summary.P50, series["nocache-build "+target].Summary.P50
		t.Logf("%s: first build %.0f ms, warm rebuild %.0f ms (docker build %.0f ms), no-cache %.0f ms; image %.1f MiB, cache %.1f MiB on disk, %.1f MiB in /system/df", target,
			series["first-build "+target].Summary.P50/1e6, cached/1e6, series["cli-cached-build "+target].Summary.P50/1e6, nocache/1e6, series["image-bytes "+target].Summary.P50/float64(mib),
			series["cache-bytes "+target].Summary.P50/float64(mib), series["cache-df-bytes "+target].Summary.P50/float64(mib))
		if !(cached > 0 && cached < nocache) {
			t.Errorf("%s: warm rebuild median %.0f ns, no-cache %.0f ns: want the warm one faster", target, cached, nocache)
		}
		if img := series["image-bytes "+target].Summary.P50; img <= float64(p.Build.ContextBytes) {
			t.Errorf("%s: image %.0f bytes, want more than the %d byte context it copies", target, img, p.Build.ContextBytes)
		}
		// The COPY step's layer is unpacked on the driver (the next RUN
		// runs on it), so the cache holds at least the context.
		for _, op := range []string{"cache-bytes", "cache-df-bytes"} {
			if c := series[op+" "+target].Summary.P50; c < float64(p.Build.ContextBytes) {
				t.Errorf("%s: %s %.0f, want at least the %d byte context", target, op, c, p.Build.ContextBytes)
			}
		}
		// The prune after a no-cache build drops the build it superseded,
		// layers on the driver included.
		if f := series["prune-freed-bytes "+target].Summary.P50; f <= 0 {
			t.Errorf("%s: prune-freed-bytes %.0f, want the superseded build's space back", target, f)
		}
	}
	if after := hostState(t, scratch); !slices.Equal(before, after) {
		t.Errorf("left behind or removed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestBuildContext: the context holds the Dockerfile and the generated
// files under data/, as many and as large as the spec says, the same
// bytes for the same seed.
func TestBuildContext(t *testing.T) {
	dir := t.TempDir()
	spec := BuildSpec{ContextBytes: 64 * kib, ContextFiles: 8, NoCache: 1}
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	for _, p := range []string{a, b} {
		if err := writeBuildContext(p, 7, spec); err != nil {
			t.Fatal(err)
		}
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if string(ba) != string(bb) {
		t.Error("two contexts from the same seed differ")
	}
	f, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var files int
	var data int64
	var dockerfile string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case h.Name == "Dockerfile":
			b, _ := io.ReadAll(tr)
			dockerfile = string(b)
		case strings.HasPrefix(h.Name, "data/f") && h.Typeflag == tar.TypeReg:
			files++
			data += h.Size
		}
	}
	if dockerfile != buildDockerfile || files != spec.ContextFiles || data != spec.ContextBytes {
		t.Errorf("context: Dockerfile %v, %d files of %d bytes in all; want %d files, %d bytes", dockerfile == buildDockerfile, files, data, spec.ContextFiles, spec.ContextBytes)
	}
	// buildSteps counts the Dockerfile's instructions.
	if n := len(strings.Split(strings.TrimSpace(buildDockerfile), "\n")); n != buildSteps {
		t.Errorf("the Dockerfile has %d instructions, buildSteps says %d", n, buildSteps)
	}
	if err := (BuildSpec{ContextBytes: mib, ContextFiles: 3, NoCache: 1}).check(); err == nil {
		t.Error("a context of 3 files (the Dockerfile deletes f0000003) was accepted")
	}
}

// TestReadStream: text and the image ID of a build's answer; an error
// message, or a malformed stream, is an error.
func TestReadStream(t *testing.T) {
	text, id, err := readStream(strings.NewReader(`{"stream":"Step 1/2 : FROM busybox\n"}` + "\r\n" + `{"stream":" ---> Using cache\n"}{"aux":{"ID":"sha256:ab"}}{"aux":"other"}`))
	if err != nil || id != "sha256:ab" || text != "Step 1/2 : FROM busybox\n ---> Using cache\n" {
		t.Errorf("got %q %q %v", text, id, err)
	}
	for _, in := range []string{`{"stream":"x"}{"errorDetail":{"message":"boom","code":2},"error":"boom"}`, `{"error":"boom"}`, `{"stream":"x"`, `[1]`} {
		if _, _, err := readStream(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

// FuzzReadStream: any answer is read without a panic, and a stream read
// as a success stays one with one more message, and fails with an error
// message appended.
func FuzzReadStream(f *testing.F) {
	for _, s := range []string{`{"stream":"a\n"}{"aux":{"ID":"sha256:1"}}`, `{"error":"x"}`, `{"errorDetail":{"message":"y"}}`, `{"aux":3}`, `{`, ``, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		text, _, err := readStream(strings.NewReader(in))
		if err != nil {
			return
		}
		if _, _, err := readStream(strings.NewReader(in + `{"error":"late"}`)); err == nil {
			t.Errorf("%q + an error message: no error", in)
		}
		if more, _, err := readStream(strings.NewReader(in + ` {"stream":"z"}`)); err != nil || more != text+"z" {
			t.Errorf("%q + a stream message: %q, %v; want %q", in, more, err, text+"z")
		}
	})
}
