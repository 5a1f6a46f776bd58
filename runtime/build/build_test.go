package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers"
)

// memBackend keeps images in memory and their files in directories, and
// runs no container: enough for the builder's logic on every instruction
// but RUN (the end-to-end tests in cmd/layerlabd run the rest on a real
// daemon).
type memBackend struct {
	images map[string]Image  // by ID and by name
	trees  map[string]string // an image's or a container's files, by ID
	cache  map[string]string
	tags   map[string]string
	dir    string
	n      int
}

func newMem(t *testing.T) *memBackend {
	m := &memBackend{images: map[string]Image{}, trees: map[string]string{}, cache: map[string]string{}, tags: map[string]string{}, dir: t.TempDir()}
	base := Image{ID: "sha256:base", Config: dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Env: []string{"PATH=/bin"}, Cmd: []string{"sh"},
	}}}
	m.images["busybox"], m.images[base.ID] = base, base
	return m
}

var errNoContainers = errors.New("memBackend runs no containers")

func (m *memBackend) Image(_ context.Context, ref string) (Image, error) {
	img, ok := m.images[ref]
	if !ok {
		return Image{}, fmt.Errorf("No such image: %s: %w", ref, drivers.ErrNotFound)
	}
	return img, nil
}

// CreateContainer copies the image's files to the container's directory.
func (m *memBackend) CreateContainer(_ context.Context, image string, _ *container.Config, _ string) (string, error) {
	img, err := m.Image(context.Background(), image)
	if err != nil {
		return "", err
	}
	m.n++
	id := fmt.Sprintf("ctr%d", m.n)
	dir := filepath.Join(m.dir, id)
	if tree, ok := m.trees[img.ID]; ok {
		err = os.CopyFS(dir, os.DirFS(tree))
	} else {
		err = os.Mkdir(dir, 0o755)
	}
	m.trees[id] = dir
	return id, err
}

func (m *memBackend) Run(context.Context, string, io.Writer) (int, error) { return 0, errNoContainers }
func (m *memBackend) WithRootfs(_ context.Context, id string, fn func(string) error) error {
	tree, ok := m.trees[id]
	if !ok {
		return fmt.Errorf("no container %s: %w", id, drivers.ErrNotFound)
	}
	return fn(tree)
}
func (m *memBackend) RemoveContainer(_ context.Context, id string) error {
	delete(m.trees, id)
	return nil
}

// Commit makes an image; one of a container keeps the container's files.
func (m *memBackend) Commit(_ context.Context, c Commit) (string, error) {
	m.n++
	id := fmt.Sprintf("sha256:%064d", m.n)
	m.images[id] = Image{ID: id, Config: c.Config}
	if c.Container != "" {
		m.trees[id] = m.trees[c.Container]
	} else if tree, ok := m.trees[c.Parent]; ok {
		m.trees[id] = tree
	}
	m.cache[c.Parent+"\x00"+c.Key] = id
	return id, nil
}

func (m *memBackend) Cached(_ context.Context, parent, key string) (string, bool) {
	id, ok := m.cache[parent+"\x00"+key]
	return id, ok
}

func (m *memBackend) Tag(_ context.Context, id, ref string) error {
	m.tags[ref] = id
	m.images[ref] = m.images[id]
	return nil
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// recorder is an Output keeping what the build said.
type recorder struct {
	text strings.Builder
	aux  []string
}

func (r *recorder) Stream(s string) { r.text.WriteString(s) }
func (r *recorder) Aux(id string)   { r.aux = append(r.aux, id) }

// contextTar is a build context of name -> content.
func contextTar(t testing.TB, files map[string]string) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
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
	return bytes.NewReader(buf.Bytes())
}

func build(t *testing.T, m *memBackend, files map[string]string, o Options) (string, string, error) {
	t.Helper()
	var out recorder
	id, err := New(m, t.TempDir()).Build(context.Background(), contextTar(t, files), o, &out)
	return id, out.text.String(), err
}

func str(s string) *string { return &s }

func TestBuildMetadata(t *testing.T) {
	m := newMem(t)
	df := `ARG BASE=busybox
FROM $BASE AS one
ARG WHO
ARG UNSET
ENV GREETING="hello $WHO" UNSET="[$UNSET]"
LABEL who=$WHO
WORKDIR /app
WORKDIR sub
USER 1000:1000
EXPOSE 80 53/udp
VOLUME ["/data"]
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
SHELL ["/bin/ash", "-c"]
ONBUILD ENV CHILD=1
CMD echo $GREETING
ENTRYPOINT ["/entry"]
`
	id, out, err := build(t, m, map[string]string{"Dockerfile": df}, Options{
		BuildArgs: map[string]*string{"WHO": str("world"), "NOBODY": str("x"), DriverArg: str("vfs")},
		Tags:      []string{"x:1"}, Labels: map[string]string{"extra": "yes"},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	c := m.images[id].Config
	want := map[string]bool{
		"env":        slices.Contains(c.Env, "GREETING=hello world") && slices.Contains(c.Env, "UNSET=[]") && !slices.ContainsFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, "WHO=") }),
		"labels":     c.Labels["who"] == "world" && c.Labels["extra"] == "yes",
		"workdir":    c.WorkingDir == "/app/sub" && isDir(filepath.Join(m.trees[id], "app/sub")),
		"user":       c.User == "1000:1000",
		"ports":      len(c.ExposedPorts) == 2 && c.ExposedPorts["80/tcp"] == struct{}{} && c.ExposedPorts["53/udp"] == struct{}{},
		"volume":     len(c.Volumes) == 1,
		"stopsignal": c.StopSignal == "SIGUSR1",
		"health":     c.Healthcheck != nil && c.Healthcheck.Retries == 2 && slices.Equal(c.Healthcheck.Test, []string{"CMD-SHELL", "true"}),
		"shell":      slices.Equal(c.Shell, []string{"/bin/ash", "-c"}),
		"onbuild":    slices.Equal(c.OnBuild, []string{"ENV CHILD=1"}),
		// CMD of this stage stays with the ENTRYPOINT; shell form uses SHELL.
		"cmd":        slices.Equal(c.Cmd, []string{"/bin/ash", "-c", "echo $GREETING"}) && slices.Equal(c.Entrypoint, []string{"/entry"}),
		"tag":        m.tags["x:1"] == id,
		"unused arg": strings.Contains(out, "build-args [NOBODY] were not consumed"),
		"steps":      strings.Contains(out, "Step 17/17 : LABEL \"extra\"=\"yes\"") && strings.Contains(out, "Successfully tagged x:1"),
	}
	for what, ok := range want {
		if !ok {
			t.Errorf("%s: config %+v\n%s", what, c, out)
		}
	}

	// The same build again is all cache and the same image; --no-cache is
	// not; a changed argument changes the steps from its first use.
	again, out, err := build(t, m, map[string]string{"Dockerfile": df}, Options{BuildArgs: map[string]*string{"WHO": str("world")}, Labels: map[string]string{"extra": "yes"}})
	if err != nil || again != id || strings.Count(out, "Using cache") != 16 {
		t.Errorf("rebuild: %s (want %s), %v, %d from the cache:\n%s", again, id, err, strings.Count(out, "Using cache"), out)
	}
	fresh, out, err := build(t, m, map[string]string{"Dockerfile": df}, Options{BuildArgs: map[string]*string{"WHO": str("world")}, Labels: map[string]string{"extra": "yes"}, NoCache: true})
	if err != nil || fresh == id || strings.Contains(out, "Using cache") {
		t.Errorf("--no-cache: %s, %v:\n%s", fresh, err, out)
	}
	_, out, err = build(t, m, map[string]string{"Dockerfile": df}, Options{BuildArgs: map[string]*string{"WHO": str("you")}, Labels: map[string]string{"extra": "yes"}})
	if err != nil || strings.Count(out, "Using cache") != 2 {
		t.Errorf("WHO=you: %v, %d from the cache (want the two ARGs):\n%s", err, strings.Count(out, "Using cache"), out)
	}

	// A child of the image runs its trigger and does not keep it.
	child, out, err := build(t, m, map[string]string{"Dockerfile": "FROM x:1\nENV OWN=2\n"}, Options{})
	if err != nil || !strings.Contains(out, "# Executing 1 build trigger") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if cc := m.images[child].Config; !slices.Contains(cc.Env, "CHILD=1") || len(cc.OnBuild) != 0 {
		t.Errorf("child config %+v", cc)
	}
}

func TestBuildStages(t *testing.T) {
	m := newMem(t)
	df := "FROM busybox AS a\nENV STAGE=a\nFROM a AS b\nENV STAGE=b\nFROM 0\nENV FROM0=1\n"
	id, out, err := build(t, m, map[string]string{"Dockerfile": df}, Options{Target: "b"})
	if err != nil || !slices.Contains(m.images[id].Config.Env, "STAGE=b") || strings.Contains(out, "FROM 0") {
		t.Errorf("--target b: %v %+v\n%s", err, m.images[id].Config, out)
	}
	id, _, err = build(t, m, map[string]string{"Dockerfile": df}, Options{})
	if err != nil || !slices.Contains(m.images[id].Config.Env, "STAGE=a") || !slices.Contains(m.images[id].Config.Env, "FROM0=1") {
		t.Errorf("FROM 0: %v %+v", err, m.images[id].Config)
	}
}

func TestBuildRefusals(t *testing.T) {
	for df, want := range map[string]error{
		"FROM busybox\nFOO bar\n": drivers.ErrInvalidArgument,
		"ENV A=b\n":               drivers.ErrInvalidArgument,
		"FROM nosuch\n":           drivers.ErrNotFound,
		"FROM busybox\nRUN --network=none true\n":                drivers.ErrNotImplemented,
		"FROM busybox\nADD https://example.com/x /\n":            drivers.ErrNotImplemented,
		"FROM busybox\nCOPY ../x /\n":                            drivers.ErrInvalidArgument,
		"FROM busybox\nCOPY nothere /\n":                         drivers.ErrNotFound,
		"FROM busybox\nCOPY a b /dest\n":                         drivers.ErrNotFound,
		"FROM busybox\nEXPOSE 80/xyz\n":                          drivers.ErrInvalidArgument,
		"FROM busybox\nEXPOSE 99999\n":                           drivers.ErrInvalidArgument,
		"FROM busybox\n" + strings.Repeat("ENV A=1\n", maxSteps): drivers.ErrInvalidArgument,
		"FROM scratch\n":                                         drivers.ErrInvalidArgument,
	} {
		_, out, err := build(t, newMem(t), map[string]string{"Dockerfile": df}, Options{})
		if !errors.Is(err, want) {
			t.Errorf("%.40q: %v, want %v\n%s", df, err, want, out)
		}
	}
	if _, _, err := build(t, newMem(t), map[string]string{"Dockerfile": "FROM busybox AS a\n"}, Options{Target: "nosuch"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("unknown target: %v", err)
	}
	if _, _, err := build(t, newMem(t), map[string]string{"Other": "FROM busybox\n"}, Options{}); err == nil || !strings.Contains(err.Error(), "Dockerfile") {
		t.Errorf("no Dockerfile: %v", err)
	}
	if _, _, err := build(t, newMem(t), map[string]string{"Dockerfile": "FROM busybox\n"}, Options{Dockerfile: "../Dockerfile"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("-f ../Dockerfile: %v", err)
	}
}

func TestParseArgs(t *testing.T) {
	args, err := ParseArgs(`{"A":"1","B":null}`)
	if err != nil || *args["A"] != "1" || args["B"] != nil {
		t.Errorf("ParseArgs: %v %v", args, err)
	}
	for _, bad := range []string{`[1]`, `{"A":1}`, `{"":"x"}`, `{"A=B":"x"}`, `{`} {
		if _, err := ParseArgs(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseArgs(%s): %v", bad, err)
		}
	}
	if l, err := ParseLabels(`{"a":"b"}`); err != nil || l["a"] != "b" {
		t.Errorf("ParseLabels: %v %v", l, err)
	}
	if _, err := ParseLabels(`{"a":1}`); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("ParseLabels of a number: %v", err)
	}
}

func TestExposedPort(t *testing.T) {
	for in, want := range map[string]string{"80": "80/tcp", "53/UDP": "53/udp", "8000-8010": "8000-8010/tcp", "1/sctp": "1/sctp"} {
		if got, err := exposedPort(in); err != nil || got != want {
			t.Errorf("exposedPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "80/ftp", "70000", "1-x", "-1"} {
		if _, err := exposedPort(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("exposedPort(%q): %v", bad, err)
		}
	}
}

// tree writes files under a new directory.
func tree(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range files {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestPrune(t *testing.T) {
	dir := tree(t, "keep.txt", "secret.txt", "logs/a.log", "logs/keep.log", "sub/x.tmp", "sub/y.go")
	if err := prune(dir, []string{"secret.txt", "logs", "!logs/keep.log", "**/*.tmp"}); err != nil {
		t.Fatal(err)
	}
	for f, kept := range map[string]bool{"keep.txt": true, "secret.txt": false, "logs/a.log": false, "logs/keep.log": true, "sub/x.tmp": false, "sub/y.go": true} {
		if _, err := os.Stat(filepath.Join(dir, f)); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", f, err == nil, kept)
		}
	}
	if err := prune(dir, []string{"["}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("a bad pattern: %v", err)
	}
}

func TestResolve(t *testing.T) {
	dir := tree(t, "a.txt", "b.txt", "d/c.txt")
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../etc/hostname", filepath.Join(dir, "climb")); err != nil {
		t.Fatal(err)
	}
	srcs, err := resolve(dir, []string{"*.txt", "d"}, false)
	if err != nil || len(srcs) != 3 {
		t.Fatalf("resolve: %v %+v", err, srcs)
	}
	for _, p := range []string{"out", "climb"} {
		// Symlinks resolve inside the context: nothing outside is read.
		if _, err := resolve(dir, []string{p}, false); !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("resolve(%s): %v, want not found", p, err)
		}
	}
	for _, p := range []string{"../x", "/../../x", "d/../../x"} {
		if _, err := resolve(dir, []string{p}, false); !errors.Is(err, drivers.ErrInvalidArgument) && !errors.Is(err, drivers.ErrNotFound) {
			t.Errorf("resolve(%s): %v", p, err)
		}
	}
	if _, err := resolve(dir, []string{"../x"}, false); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("resolve(../x): %v", err)
	}
}

// WORKDIR makes its directory inside the image, never through a symlink
// out of it, and a file in its way is a clear error.
func TestBuildWorkdir(t *testing.T) {
	m := newMem(t)
	outside := t.TempDir()
	base, err := m.CreateContainer(context.Background(), "busybox", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	root := m.trees[base]
	if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := m.Commit(context.Background(), Commit{Container: base, Parent: "sha256:base", Key: "links"})
	if err != nil {
		t.Fatal(err)
	}
	m.images["links"] = m.images[img]
	id, out, err := build(t, m, map[string]string{"Dockerfile": "FROM links\nWORKDIR /out/x\n"}, Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("WORKDIR through a symlink wrote outside the image: %v", entries)
	}
	if !isDir(filepath.Join(m.trees[id], "out", "x")) && !isDir(filepath.Join(m.trees[id], outside, "x")) {
		t.Errorf("WORKDIR /out/x: no directory in the image")
	}
	_, out, err = build(t, m, map[string]string{"Dockerfile": "FROM links\nWORKDIR /file/sub\n"}, Options{})
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "WORKDIR /file/sub") {
		t.Errorf("WORKDIR under a file: %v\n%s", err, out)
	}
}

// A context file named ".wh.*" is a file to COPY, as with dockerd, not a
// deletion of its namesake.
func TestBuildWhiteoutNamedFile(t *testing.T) {
	m := newMem(t)
	files := map[string]string{"Dockerfile": "FROM busybox\nCOPY . /dst/\n", "keep": "k", ".wh.keep": "not a whiteout"}
	id, out, err := build(t, m, files, Options{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for name, want := range map[string]string{"keep": "k", ".wh.keep": "not a whiteout"} {
		if b, err := os.ReadFile(filepath.Join(m.trees[id], "dst", name)); err != nil || string(b) != want {
			t.Errorf("/dst/%s: %q, %v; want %q", name, b, err, want)
		}
	}
}
