package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/loopfs"
)

// buildDockerfile uses every instruction the seeds name, in two stages.
const buildDockerfile = `ARG BASE=busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV APP_HOME=/app
WORKDIR $APP_HOME
COPY src/ ./src/
RUN echo "$GREETING from builder" > greeting.txt && cat greeting.txt
ADD files.tar.gz /app/unpacked/
ADD src/hello.txt /bin
RUN cat /app/unpacked/inner/a.txt && test -f /bin/hello.txt

FROM busybox AS final
MAINTAINER layerlab
LABEL "purpose"="practice"
COPY --from=builder /app/greeting.txt /greeting.txt
COPY --chown=1000:1000 src/*.txt /home/app/
USER 1000
WORKDIR /home/app
EXPOSE 8080
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s CMD cat /greeting.txt
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo onbuild-trigger-ran
CMD ["cat", "/greeting.txt"]
`

// writeFiles writes name -> content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tarGz is a gzip-compressed tar of name -> content.
func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// builtID is the ID a build printed ("Successfully built ID").
func builtID(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`Successfully built ([0-9a-f]{12})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no \"Successfully built\" in:\n%s", out)
	}
	return m[1]
}

// TestEndToEndBuild drives the classic builder with the real docker CLI
// (DOCKER_BUILDKIT=0): a multi-stage build using every instruction,
// --build-arg, .dockerignore, ADD of a local tar.gz, ONBUILD in a child
// build, --target, the cache and --no-cache, history's empty layers, the
// seeds' size lesson on three storage drivers picked per build, the errors
// of hostile Dockerfiles, and the refusal of BuildKit requests.
func TestEndToEndBuild(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	t.Setenv("DOCKER_BUILDKIT", "0")
	e := newTestEnv(t)
	btrfs := loopfs.ForTest(t, "btrfs", 1<<30)
	e.drivers = "vfs,overlay2,btrfs"
	e.opts = []string{"--storage-opt", "btrfs.home=" + filepath.Join(btrfs.Dir, "layerlabd")}
	e.start(t, "layerlabd.log")
	c := e.busyboxCLI(t)
	ctx := t.TempDir()
	writeFiles(t, ctx, map[string]string{
		"Dockerfile":        buildDockerfile,
		"src/hello.txt":     "hello file\n",
		"src/other.txt":     "other file\n",
		"secret.txt":        "do not ship\n",
		".dockerignore":     "secret.txt\n",
		"Dockerfile.child":  "FROM app:1\nRUN echo child-step\n",
		"Dockerfile.secret": "FROM busybox\nCOPY secret.txt /\n",
	})
	if err := os.WriteFile(filepath.Join(ctx, "files.tar.gz"), tarGz(t, map[string]string{"inner/a.txt": "from the archive\n"}), 0o644); err != nil {
		t.Fatal(err)
	}
	since := strconv.FormatInt(time.Now().Unix()-1, 10)

	out := c.expect(0, "Successfully tagged app:1", "build", "-t", "app:1", "-t", "app:latest", "--build-arg", "GREETING=hi", "--label", "build=e2e", ctx)
	for _, want := range []string{"Step 1/24 : FROM ${BASE} AS builder", "hi from builder", "from the archive", "Successfully tagged app:latest", "Removing intermediate container"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Using cache") {
		t.Errorf("first build used a cache:\n%s", out)
	}
	first := builtID(t, out)
	// The intermediate images show only with -a, as with dockerd: the 22
	// steps' images but the tagged one and the builder stage's last (no
	// child: a dangling image docker images lists).
	if shown, all := c.expect(0, "", "images", "-q"), c.expect(0, "", "images", "-aq"); strings.Count(all, "\n") != strings.Count(shown, "\n")+20 {
		t.Errorf("docker images -q lists %d images, -aq %d: want 20 more with -a", strings.Count(shown, "\n"), strings.Count(all, "\n"))
	}
	c.expect(0, "hi from builder", "run", "--rm", "app:1")
	c.expect(0, "hello file", "run", "--rm", "app:1", "cat", "/home/app/hello.txt")
	c.expect(0, "1000:1000", "run", "--rm", "app:1", "stat", "-c", "%u:%g", "/home/app/other.txt")
	var img []struct {
		Config struct {
			User, WorkingDir, StopSignal string
			ExposedPorts                 map[string]any
			Volumes                      map[string]any
			Labels                       map[string]string
			OnBuild, Cmd, Env            []string
			Healthcheck                  struct{ Test []string }
		}
		Author string
	}
	if err := json.Unmarshal([]byte(c.expect(0, "", "image", "inspect", "app:1")), &img); err != nil || len(img) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	cfg := img[0].Config
	if cfg.User != "1000" || cfg.WorkingDir != "/home/app" || cfg.StopSignal != "SIGUSR1" || cfg.ExposedPorts["8080/tcp"] == nil ||
		cfg.Volumes["/data"] == nil || cfg.Labels["purpose"] != "practice" || cfg.Labels["build"] != "e2e" ||
		len(cfg.OnBuild) != 1 || strings.Join(cfg.Cmd, " ") != "cat /greeting.txt" || len(cfg.Healthcheck.Test) == 0 || img[0].Author != "layerlab" {
		t.Errorf("image config: %+v", img[0])
	}
	for _, kv := range cfg.Env {
		if strings.HasPrefix(kv, "GREETING=") {
			t.Errorf("a build argument reached the image's environment: %v", cfg.Env)
		}
	}
	// One history entry per instruction of the final stage (plus the
	// base's), the metadata ones with empty layers.
	hist := c.expect(0, "", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", "app:1")
	for _, want := range []string{"0B\t/bin/sh -c #(nop)  USER 1000", "0B\t/bin/sh -c #(nop)  EXPOSE 8080/tcp", "#(nop)  ONBUILD RUN echo onbuild-trigger-ran", "LABEL build=e2e"} {
		if !strings.Contains(hist, want) {
			t.Errorf("history lacks %q:\n%s", want, hist)
		}
	}
	if n := strings.Count(strings.TrimSpace(hist), "\n") + 1; n != 15 {
		t.Errorf("history has %d entries, want 15 (busybox's, 13 instructions and the --label):\n%s", n, hist)
	}

	// The same build again: every step from the cache, the same image.
	out = c.expect(0, "Successfully tagged app:1", "build", "-t", "app:1", "--build-arg", "GREETING=hi", "--label", "build=e2e", ctx)
	if n := strings.Count(out, "Using cache"); n != 22 || builtID(t, out) != first {
		t.Errorf("rebuild: %d steps from the cache (want 22), image %s (want %s):\n%s", n, builtID(t, out), first, out)
	}
	// A changed build argument rebuilds from the RUN that sees it: the
	// builder's ARG..COPY and the final stage's MAINTAINER and LABEL come
	// from the cache, its COPY --from of the new greeting does not.
	out = c.expect(0, "bye from builder", "build", "-t", "app:bye", "--build-arg", "GREETING=bye", ctx)
	if n := strings.Count(out, "Using cache"); n != 6 {
		t.Errorf("GREETING=bye: %d steps from the cache, want 6:\n%s", n, out)
	}
	// A changed COPY'd file rebuilds from that COPY on (ARG, ENV, WORKDIR
	// cached); in the final stage the greeting copied --from is the same
	// content, so that COPY is cached, and the COPY of src/*.txt is not.
	writeFiles(t, ctx, map[string]string{"src/other.txt": "other file, changed\n"})
	out = c.expect(0, "Successfully built", "build", "-t", "app:changed", "--build-arg", "GREETING=hi", ctx)
	if n := strings.Count(out, "Using cache"); n != 6 || strings.Contains(out, "Step 5/24 : COPY src/ ./src/\n ---> Using cache") {
		t.Errorf("after changing src/other.txt: %d steps from the cache, want 6 (not the COPY of src/):\n%s", n, out)
	}
	out = c.expect(0, "Successfully built", "build", "--no-cache", "--build-arg", "GREETING=hi", ctx)
	if strings.Contains(out, "Using cache") || builtID(t, out) == first {
		t.Errorf("--no-cache used the cache:\n%s", out)
	}

	// -q prints no steps; --iidfile gets the image's ID from the aux
	// message.
	iid := filepath.Join(e.tmp, "iid")
	quiet := c.expect(0, "", "build", "-q", "--iidfile", iid, "--build-arg", "GREETING=hi", ctx)
	if strings.Contains(quiet, "Step") {
		t.Errorf("build -q printed the steps:\n%s", quiet)
	}
	if b, err := os.ReadFile(iid); err != nil || !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n?$`).Match(b) {
		t.Errorf("--iidfile: %q, %v", b, err)
	} else if lines := strings.Split(strings.TrimSpace(quiet), "\n"); lines[len(lines)-1] != strings.TrimSpace(string(b)) {
		// (the CLI's deprecation notice for the classic builder is on
		// stderr, which expect reads too)
		t.Errorf("build -q printed %q, want the image ID %s last", quiet, b)
	}

	// --target stops at the builder stage.
	out = c.expect(0, "Successfully tagged app:builder", "build", "--target", "builder", "-t", "app:builder", ctx)
	if strings.Contains(out, "AS final") {
		t.Errorf("--target builder built the final stage:\n%s", out)
	}
	c.expect(0, "hello from builder", "run", "--rm", "app:builder", "cat", "/app/greeting.txt")

	// ONBUILD: the child build runs the trigger first; -f names another
	// Dockerfile in the context.
	out = c.expect(0, "# Executing 1 build trigger", "build", "-f", filepath.Join(ctx, "Dockerfile.child"), "-t", "app:child", ctx)
	if !strings.Contains(out, "onbuild-trigger-ran") || !strings.Contains(out, "child-step") {
		t.Errorf("child build:\n%s", out)
	}
	if onbuild := c.expect(0, "", "image", "inspect", "-f", "{{json .Config.OnBuild}}", "app:child"); strings.Contains(onbuild, "onbuild") {
		t.Errorf("the child kept its base's triggers: %s", onbuild)
	}

	// .dockerignore keeps secret.txt out of the context.
	c.expect(1, "secret.txt", "build", "-f", filepath.Join(ctx, "Dockerfile.secret"), ctx)

	// The seeds' size lesson, on overlay2 (the default) and on vfs and
	// btrfs picked for the build: a 100 MB file made and deleted in two
	// RUNs weighs on the image, in one RUN it does not.
	sizes := t.TempDir()
	writeFiles(t, sizes, map[string]string{
		"Dockerfile.two": "FROM busybox\nRUN mkdir /test\nRUN dd if=/dev/zero of=/test/dummy bs=1M count=100\nRUN rm /test/dummy\n",
		"Dockerfile.one": "FROM busybox\nRUN mkdir /test && dd if=/dev/zero of=/test/dummy bs=1M count=100 && rm /test/dummy\n",
	})
	base := imageSize(t, c, "busybox")
	for _, driver := range []string{"overlay2", "vfs", "btrfs"} {
		for _, df := range []string{"two", "one"} {
			tag := "size-" + df + ":" + driver
			out := c.expect(0, "Successfully tagged", "build", "--no-cache", "--rm=false", "--build-arg", "LAYERLAB_STORAGE_DRIVER="+driver,
				"-f", filepath.Join(sizes, "Dockerfile."+df), "-t", tag, sizes)
			// The intermediate containers were kept (--rm=false): they ran on
			// the driver the build asked for.
			for _, m := range regexp.MustCompile(`Running in ([0-9a-f]{12})`).FindAllStringSubmatch(out, -1) {
				c.expect(0, driver, "inspect", "-f", "{{.GraphDriver.Name}}", m[1])
				c.expect(0, "", "rm", m[1])
			}
			size := imageSize(t, c, tag)
			switch {
			case df == "two" && size < base+100<<20:
				t.Errorf("%s: %d bytes, want over busybox's %d + 100 MiB", tag, size, base)
			case df == "one" && size > base+5<<20:
				t.Errorf("%s: %d bytes, want under busybox's %d + 5 MiB", tag, size, base)
			}
			t.Logf("%s: %d bytes (busybox %d)", tag, size, base)
		}
	}
	c.expect(1, "LAYERLAB_STORAGE_DRIVER=nosuch", "build", "--build-arg", "LAYERLAB_STORAGE_DRIVER=nosuch", "-f", filepath.Join(sizes, "Dockerfile.one"), sizes)

	// Build events: intermediate containers made and destroyed, tags.
	until := strconv.FormatInt(time.Now().Unix()+1, 10)
	events := c.expect(0, "", "events", "--since", since, "--until", until, "--format", "{{.Type}} {{.Action}}")
	for _, want := range []string{"container create", "container start", "container destroy", "image tag"} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}

	// Without DOCKER_BUILDKIT the CLI (no buildx plugin here) builds with
	// the classic builder too.
	os.Unsetenv("DOCKER_BUILDKIT")
	c.expect(0, "Successfully built", "build", "-f", filepath.Join(sizes, "Dockerfile.one"), sizes)
	t.Setenv("DOCKER_BUILDKIT", "0")

	// docker builder prune empties the cache: the tagged images stay, the
	// next build runs every step again.
	c.expect(0, "Total reclaimed space", "builder", "prune", "-f")
	c.expect(0, "hi from builder", "run", "--rm", "app:1")
	if out := c.expect(0, "Successfully built", "build", "--build-arg", "GREETING=hi", ctx); strings.Contains(out, "Using cache") {
		t.Errorf("a build after builder prune used the cache:\n%s", out)
	}

	// Hostile Dockerfiles: each a clear error.
	hostile := t.TempDir()
	outside := filepath.Join(filepath.Dir(hostile), "outside.txt")
	writeFiles(t, filepath.Dir(hostile), map[string]string{"outside.txt": "outside\n"})
	t.Cleanup(func() { os.Remove(outside) })
	if err := os.Symlink("/etc/hostname", filepath.Join(hostile, "link")); err != nil {
		t.Fatal(err)
	}
	for df, want := range map[string]string{
		"FROM busybox\nCOPY ../outside.txt /\n":                     "forbidden path outside the build context",
		"FROM busybox\nCOPY link /\n":                               "file not found in build context",
		"FROM busybox\nFOO bar\n":                                   "unknown instruction: FOO",
		"FROM busybox\nADD http://example.com/x.tar /\n":            "no network access",
		"FROM busybox\nRUN --mount=type=cache,target=/x true":       "needs BuildKit",
		"FROM nosuchimage\n":                                        "No such image",
		"FROM busybox\nRUN exit 3\n":                                "returned a non-zero code: 3",
		"FROM busybox\nARG A=$B\nARG B=$A\nRUN echo \"[$A][$B]\"\n": "",
		"FROM busybox\n" + strings.Repeat("RUN true\n", 10000):      "at most 1000",
	} {
		writeFiles(t, hostile, map[string]string{"Dockerfile": df})
		code := 1
		switch want {
		case "":
			code, want = 0, "[][]"
		case "returned a non-zero code: 3":
			code = 3
		}
		c.expect(code, want, "build", hostile)
	}

	// A RUN in a WORKDIR no step made yet; a predefined argument reaches
	// RUN without an ARG and stays out of the history.
	writeFiles(t, hostile, map[string]string{"Dockerfile": "FROM busybox\nWORKDIR /made/here\nRUN pwd && echo \"proxy=$no_proxy\"\n"})
	c.expect(0, "/made/here\nproxy=localhost", "build", "--build-arg", "no_proxy=localhost", "-t", "wd", hostile)
	if hist := c.expect(0, "", "history", "--no-trunc", "wd"); strings.Contains(hist, "no_proxy=localhost") {
		t.Errorf("a predefined argument is in the history:\n%s", hist)
	}
	// WORKDIR made its directory in the image (as dockerd's builder), not
	// only the runtime when a container starts there.
	c.expect(0, "/made/here", "run", "--rm", "-w", "/", "wd", "ls", "-d", "/made/here")
	// Steps that change nothing add no layer, only history (0B), as with
	// dockerd: a WORKDIR that exists, a RUN that writes nothing (the
	// mountpoints the runtime made for /etc/hosts and its kin stay out).
	writeFiles(t, hostile, map[string]string{"Dockerfile": "FROM busybox\nWORKDIR /tmp\nRUN true\n"})
	c.expect(0, "Successfully tagged nochange", "build", "-t", "nochange", hostile)
	if sizes := c.expect(0, "", "history", "--format", "{{.Size}}", "nochange"); !strings.HasPrefix(sizes, "0B\n0B\n") {
		t.Errorf("history of steps that changed nothing: %q, want 0B twice on top", sizes)
	}
	c.expect(0, c.expect(0, "", "inspect", "-f", "{{len .RootFS.Layers}}", "busybox"), "inspect", "-f", "{{len .RootFS.Layers}}", "nochange")

	// BuildKit requests and bad build queries are refused, saying why and
	// what to do; /_ping tells the CLI to use the classic builder.
	checkAPIErrors(t, apiClient(e.sock), []apiError{
		{method: "POST", path: "/v1.41/build?version=2", status: http.StatusNotImplemented, want: "DOCKER_BUILDKIT=0"},
		{method: "POST", path: "/session", status: http.StatusNotImplemented, want: "DOCKER_BUILDKIT=0"},
		{method: "POST", path: "/v1.41/build?buildargs=%7Bnot-json", status: http.StatusBadRequest, want: "buildargs"},
		{method: "POST", path: "/v1.41/build?pull=1", status: http.StatusNotImplemented, want: "drop --pull"},
		{method: "POST", path: "/v1.41/build?t=UPPER:bad", status: http.StatusBadRequest, want: "invalid tag"},
		{method: "POST", path: "/v1.41/build", body: []byte("not a tar"), status: http.StatusBadRequest, want: "build context"},
	})
	resp, err := apiClient(e.sock).Head("http://layerlabd/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Builder-Version"); v != "1" {
		t.Errorf("/_ping Builder-Version %q, want 1", v)
	}
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// imageSize is docker image inspect's Size.
func imageSize(t *testing.T, c cli, ref string) int64 {
	t.Helper()
	out := c.expect(0, "", "image", "inspect", "-f", "{{.Size}}", ref)
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		t.Fatalf("size of %s: %q: %v", ref, out, err)
	}
	return n
}

// TestEndToEndBuildDockerPy: images.build with buildargs, labels, target
// and nocache, then the image run (testdata/dockerpy_build.py).
func TestEndToEndBuildDockerPy(t *testing.T) {
	runDockerPy(t, "dockerpy_build.py")
}
