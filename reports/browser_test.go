package reports

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/feature"
)

// chromiumBinary finds a Chromium or Chrome to render the report with.
func chromiumBinary() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// runChromium runs headless Chromium with args and returns its stdout.
// Chromium forks a zygote, renderers and GPU process (same process group)
// and crash handlers that start their own session; all of them carry the
// private HOME or profile directory made here on their command line, so
// afterwards the group is killed and any straggler found by that path is
// killed by PID. The test fails if any survives.
func runChromium(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	home, err := os.MkdirTemp("", "layerlab-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	profile := filepath.Join(home, "profile")
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-crash-reporter", "--disable-breakpad", "--hide-scrollbars",
		"--user-data-dir=" + profile, "--virtual-time-budget=5000"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home+"/.config", "XDG_CACHE_HOME="+home+"/.cache")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	runErr := cmd.Wait()
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // whatever of the group is left
	if left := reap(home, pgid); len(left) > 0 {
		t.Errorf("chromium processes still running after the test: %v", left)
	}
	if runErr != nil {
		t.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), runErr, tail(stderr.String(), 2000))
	}
	return stdout.Bytes()
}

// reap kills (by PID) processes of this run outside its process group —
// found by the run's private directory in their command line — and waits
// until neither they nor the group exist. It returns what survived.
func reap(dir string, pgid int) []int {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var alive []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
				continue
			}
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && zombie(st) {
				continue
			}
			alive = append(alive, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		groupGone := errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
		if len(alive) == 0 && groupGone {
			return nil
		}
		if time.Now().After(deadline) {
			if !groupGone {
				alive = append(alive, -pgid)
			}
			return alive
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// zombie reports whether /proc/PID/stat says the process has exited and
// waits only for its parent to reap it.
func zombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

var imgTag = regexp.MustCompile(`<img\b[^>]*>`)

// TestReportRendersInChromium loads index.html in headless Chromium and
// proves the findings at its top are laid out with text, and every chart
// image decoded and is laid out with a size: the
// page's own load script marks each <img> data-ok="1" only when
// img.complete && naturalWidth > 0 && its box is non-empty. Then it takes a
// screenshot and checks it shows more than a blank page.
func TestReportRendersInChromium(t *testing.T) {
	t.Parallel()
	bin := chromiumBinary()
	if bin == "" {
		feature.Skip(t, feature.Chromium, "chromium not installed (Debian: apt-get install chromium); cannot check index.html in a headless browser")
	}
	_, dir := renderFixture(t)
	html := readFile(t, filepath.Join(dir, IndexHTML))
	want := len(imgTag.FindAllString(html, -1))
	if want == 0 {
		t.Fatal("index.html has no <img>")
	}
	url := "file://" + filepath.Join(dir, IndexHTML)

	dom := string(runChromium(t, bin, "--dump-dom", url))
	if !strings.Contains(dom, `data-checked="1"`) {
		t.Fatalf("the page's load script did not run (no data-checked on <body>); DOM:\n%s", tail(dom, 1500))
	}
	// Every finding is laid out with text (the load script counts them).
	findings := strings.Count(html, `<div class="finding"`)
	if findings == 0 {
		t.Fatal("index.html has no finding")
	}
	if !strings.Contains(dom, `data-findings="`+strconv.Itoa(findings)+`"`) {
		t.Errorf("Chromium laid out fewer than the %d findings of index.html; DOM:\n%s", findings, tail(dom, 1500))
	}
	imgs := imgTag.FindAllString(dom, -1)
	if len(imgs) != want {
		t.Errorf("rendered DOM has %d <img>, index.html %d", len(imgs), want)
	}
	for _, img := range imgs {
		if !strings.Contains(img, `data-ok="1"`) {
			t.Errorf("chart not visible in Chromium: %s", img)
		}
	}

	shot := filepath.Join(t.TempDir(), "report.png")
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1280,2400", url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 2400 {
		t.Errorf("screenshot is %dx%d, want 1280x2400", b.Dx(), b.Dy())
	}
	colours, ink := screenshotStats(img)
	// A page of text alone has a few dozen colours (anti-aliasing) and
	// little ink; charts bring the palette, fills and lines.
	if colours < 200 || ink < 0.03 {
		t.Errorf("screenshot looks blank or chartless: %d colours, %.1f%% non-white", colours, ink*100)
	}
}

// screenshotStats counts distinct colours and the share of non-white
// pixels.
func screenshotStats(img image.Image) (int, float64) {
	b := img.Bounds()
	seen := map[[3]uint32]bool{}
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				ink++
			}
		}
	}
	return len(seen), float64(ink) / float64(b.Dx()*b.Dy())
}
