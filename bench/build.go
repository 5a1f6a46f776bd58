package bench

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
)

// BuildSpec is the context and the series the build workload measures.
type BuildSpec struct {
	ContextBytes int64 // the generated files COPY takes, in all
	ContextFiles int   // how many files they are split into (at least 4)
	// NoCache is the samples of the --no-cache build. Fewer than N: every
	// such build leaves its step layers on the driver (layerlabd keeps a
	// committed layer when the images using it are deleted), and vfs on
	// ext4 holds each as a full copy of the rootfs.
	NoCache int
}

func (s BuildSpec) check() error {
	if s.ContextFiles < 4 || s.ContextBytes < 0 || s.NoCache < 1 {
		return fmt.Errorf("build: %d context files of %d bytes in all, %d no-cache samples: %w: want at least 4 files (the Dockerfile modifies and deletes some) and 1 sample",
			s.ContextFiles, s.ContextBytes, s.NoCache, drivers.ErrInvalidArgument)
	}
	return nil
}

// buildDockerfile is the workload's Dockerfile: 10 steps over the bench's
// busybox image that create, modify (copy-up of context files) and delete
// files, set ENV and WORKDIR and COPY the generated context.
const buildDockerfile = `FROM busybox
ENV BENCH=build
WORKDIR /bench
RUN mkdir gen && i=0 && while [ $i -lt 200 ]; do echo "file $i" > gen/f$i; i=$((i+1)); done
COPY data/ data/
RUN dd if=/dev/zero of=data/f0000001 bs=4096 count=4 conv=notrunc && echo appended >> data/f0000002 && echo changed > gen/f0
RUN rm data/f0000003 && rm -r gen/f1*
RUN echo "$BENCH" > stage && ln -s data/f0000000 first
ENV BENCH=done
CMD ["cat", "/bench/stage"]
`

// buildSteps is the Dockerfile's instruction count: a warm rebuild takes
// every step but FROM from the cache.
const buildSteps = 10

// buildTag names the image every build of the workload makes.
const buildTag = "layerlab-bench-build:latest"

// buildNote says once per run what each build op includes.
const buildNote = "build: a 10-step Dockerfile (FROM the bench's busybox image; ENV, WORKDIR; RUN steps that create 200 files, " +
	"modify two context files (a copy-up) and delete files; COPY of a generated context) built by layerlabd's classic builder through POST /build " +
	"(raw HTTP 1.41 on its unix socket, layerlabd started by the bench in a mount+network namespace of its own with the target's driver, as for lifecycle; steps run with network none). " +
	"Every build's time includes sending the context tar and the daemon's unpacking and hashing of it. " +
	"first-build is the first build on a fresh daemon: empty cache, the base image not yet unpacked on the driver (one sample). " +
	"cached-build is a warm-cache rebuild of the same context: every step after FROM from the cache (checked); " +
	"cli-cached-build is the same rebuild with `DOCKER_BUILDKIT=0 docker build --network none -t TAG - < context.tar` (/usr/local/bin/docker), the CLI process included, alternating with cached-build. " +
	"nocache-build is the same with nocache=1 (--no-cache): every step runs and commits again. " +
	"image-bytes is the built image's Size as image inspect reports it: its layers' tar bytes, the same on every driver. " +
	"cache-bytes is what a --no-cache build adds on the target's filesystem (statfs after syncfs, once it holds still for 200 ms): " +
	"the step layers the driver committed, as it stores them (vfs copies the rootfs per layer: in full on ext4, as extent clones on xfs and btrfs), and their layer blobs. " +
	"cache-df-bytes is the same growth in /system/df's LayersSize (the committed snapshots' Usage: what each layer adds to its parent, the same on every driver). " +
	"prune-freed-bytes is what the POST /build/prune after it (untimed) gives back: the superseded build's step images, their blobs and their layers on the driver. " +
	"both count the step layers a later step ran on (the last RUN's layer is unpacked only when a container runs the image). " +
	"/system/df's BuildCache is empty on layerlabd, whose classic builder caches in untagged step images. " +
	"Fewer no-cache samples are taken than cached ones: each holds the driver's space for a whole build"

// buildWorkload measures docker builds on target t (see buildNote).
func buildWorkload(ctx context.Context, r *run, t *target) (err error) {
	r.noteOnce("build", buildNote)
	spec := r.prof.Build
	if err := spec.check(); err != nil {
		return err
	}
	dir, done, err := workloadDir(t, "build")
	if err != nil {
		return err
	}
	defer done()
	_, archive, err := busyboxArchive(ctx, dir)
	if err != nil {
		return err
	}
	buildContext := filepath.Join(dir, "context.tar")
	if err := writeBuildContext(buildContext, r.seed, spec); err != nil {
		return err
	}
	ll, err := startLayerlabd(ctx, r, t, dir, "build", "every build op")
	if err != nil || ll == nil {
		return err
	}
	defer func() { err = errors.Join(err, ll.stop()) }()
	c := newAPIClient(ll.sock)
	defer c.close()
	if err := c.load(ctx, archive); err != nil {
		return err
	}
	p := func(op, unit string) point { return point{Workload: "build", Op: op, Target: t.info.ID, Unit: unit} }
	if err := r.rec.time(p("first-build", ""), func() error { _, err := c.build(ctx, buildContext, false); return err }); err != nil {
		return err
	}
	cli := true
	if _, err := os.Stat(dockerCLI); err != nil {
		cli = false
		r.noteOnce("build-no-cli", fmt.Sprintf("build: cli-cached-build not measured: %v", err))
	}
	config := filepath.Join(ll.sockDir, "docker-config")
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		// The API's and the CLI's rebuilds alternate, so both see the
		// same machine.
		builds := map[string]func() (int, error){"cached-build": func() (int, error) { return c.build(ctx, buildContext, false) }}
		if cli {
			builds["cli-cached-build"] = func() (int, error) { return cliBuild(ctx, ll.sock, config, buildContext) }
		}
		for _, op := range []string{"cached-build", "cli-cached-build"} {
			fn := builds[op]
			if fn == nil {
				continue
			}
			var cached int
			if err := r.recorderFor(i).time(p(op, ""), func() (err error) { cached, err = fn(); return err }); err != nil {
				return err
			}
			if cached != buildSteps-1 {
				return fmt.Errorf("build: a warm rebuild (%s) took %d of its %d steps after FROM from the cache, want all", op, cached, buildSteps-1)
			}
		}
	}
	// One warm-up at most: each run costs the driver its layers.
	warm := min(r.prof.Warmup, 1)
	for i := 0; i < warm+spec.NoCache; i++ {
		rec := r.rec
		if i < warm {
			rec = r.discard
		}
		if free, err := freeBytes(dir); err != nil {
			return err
		} else if need := 8 * (spec.ContextBytes + 16*mib); free < need {
			r.note(fmt.Sprintf("build on %s: nocache-build stopped after %d of %d runs: %d MiB free on the target's filesystem, want %d MiB (layerlabd keeps the committed layers of deleted images)",
				t.info.ID, i, warm+spec.NoCache, free/mib, need/mib))
			return nil
		}
		if err := noCacheOnce(ctx, rec, c, dir, buildContext, p); err != nil {
			return err
		}
	}
	return nil
}

// noCacheOnce times one --no-cache build and records the image's size and
// what the build added on the target's filesystem and in the driver's
// Usage; then it prunes the build cache and records what that freed.
func noCacheOnce(ctx context.Context, rec *recorder, c *apiClient, dir, buildContext string, p func(op, unit string) point) error {
	usedBefore, err := settledUsed(ctx, dir)
	if err != nil {
		return err
	}
	dfBefore, err := c.layersSize(ctx)
	if err != nil {
		return err
	}
	var cached int
	if err := rec.time(p("nocache-build", ""), func() (err error) { cached, err = c.build(ctx, buildContext, true); return err }); err != nil {
		return err
	}
	if cached != 0 {
		return fmt.Errorf("build: a --no-cache build took %d steps from the cache", cached)
	}
	var img struct{ Size int64 }
	if err := c.do(ctx, http.MethodGet, "/images/"+buildTag+"/json", nil, &img); err != nil {
		return err
	}
	rec.add(p("image-bytes", "bytes"), float64(img.Size))
	usedBuilt, err := settledUsed(ctx, dir)
	if err != nil {
		return err
	}
	dfBuilt, err := c.layersSize(ctx)
	if err != nil {
		return err
	}
	rec.add(p("cache-bytes", "bytes"), float64(usedBuilt-usedBefore))
	rec.add(p("cache-df-bytes", "bytes"), float64(dfBuilt-dfBefore))
	if err := c.do(ctx, http.MethodPost, "/build/prune", nil, nil); err != nil {
		return err
	}
	usedAfter, err := settledUsed(ctx, dir)
	if err != nil {
		return err
	}
	rec.add(p("prune-freed-bytes", "bytes"), float64(usedBuilt-usedAfter))
	return nil
}

// settledUsed is usedBytes of dir once it holds still for 200 ms (10 s at
// most): xfs frees the blocks of deleted files (the build's unpacked
// context, the blobs a prune drops) in background work after the unlink
// has returned, which a read right away misses.
func settledUsed(ctx context.Context, dir string) (int64, error) {
	prev, same := int64(-1), 0
	for deadline := time.Now().Add(10 * time.Second); ; {
		used, err := usedBytes(dir)
		if err != nil {
			return 0, err
		}
		if used == prev {
			same++
		} else {
			prev, same = used, 0
		}
		if same == 2 || time.Now().After(deadline) {
			return used, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// build posts the context tar at path to /build, tagging buildTag, and
// returns how many steps came from the cache. The build's own failure
// (a step's error in the answer's stream) is an error too.
func (c *apiClient) build(ctx context.Context, path string, noCache bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	q := url.Values{"t": {buildTag}, "networkmode": {"none"}, "forcerm": {"1"}}
	if noCache {
		q.Set("nocache", "1")
	}
	var out bytes.Buffer
	if err := c.do(ctx, http.MethodPost, "/build?"+q.Encode(), f, &out); err != nil {
		return 0, err
	}
	text, id, err := readStream(&out)
	if err != nil {
		return 0, fmt.Errorf("build: %w", err)
	}
	if id == "" {
		return 0, fmt.Errorf("build: the answer names no image: %s", tail(text))
	}
	return strings.Count(text, " ---> Using cache\n"), nil
}

// cliBuild runs `docker build` (the classic builder: DOCKER_BUILDKIT=0)
// of the context tar at path, given on stdin, against the daemon on sock
// and returns how many steps came from the cache.
func cliBuild(ctx context.Context, sock, config, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, dockerCLI, "-H", "unix://"+sock, "build", "--network", "none", "-t", buildTag, "-")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+config, "DOCKER_HOST=", "DOCKER_CONTEXT=", "DOCKER_BUILDKIT=0")
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("docker build: %w: %s", err, tail(string(out)))
	}
	return strings.Count(string(out), " ---> Using cache\n"), nil
}

// layersSize is /system/df's LayersSize: what the daemon's committed
// snapshots take on its driver.
func (c *apiClient) layersSize(ctx context.Context) (int64, error) {
	var df struct{ LayersSize int64 }
	err := c.do(ctx, http.MethodGet, "/system/df", nil, &df)
	return df.LayersSize, err
}

// tail is the end of a build's output, for errors.
func tail(s string) string {
	const max = 1000
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return strings.TrimSpace(s)
}

// freeBytes is the space left to an unprivileged writer on dir's
// filesystem.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// writeBuildContext writes the build context tar to path: the Dockerfile
// and, under data/, spec's files generated from seed (the same bytes on
// every target, so every driver builds the same layers).
func writeBuildContext(path string, seed int64, spec BuildSpec) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	mtime := layer.GenerateTime()
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(buildDockerfile)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.WriteString(tw, buildDockerfile); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "data/", Mode: 0o755, ModTime: mtime, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(layer.Generate(pw, seed, layer.Spec{Files: spec.ContextFiles, FileSize: spec.ContextBytes / int64(spec.ContextFiles)}))
	}()
	defer pr.Close() // ends Generate if the copy stops early
	tr := tar.NewReader(pr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		h.Name = "data/" + h.Name
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
