// Package build is layerlabd's classic Dockerfile builder: the Dockerfile
// is read with BuildKit's parser (frontend/dockerfile/parser and
// instructions), then each instruction runs as dockerd's classic builder
// runs it, on the daemon's own operations (a Backend): RUN and COPY/ADD
// in a container of the previous step's image, committed to a layer;
// the other instructions as images with an empty layer in their
// history. Every step's image is an ordinary (dangling) image that knows
// its parent and the step that made it, which is the build cache.
package build

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// DriverArg is the reserved build argument that picks the storage driver
// the build's containers run on (`--build-arg LAYERLAB_STORAGE_DRIVER=vfs`):
// `docker build` has no --storage-opt, and a build argument is what both
// the CLI and docker-py can send. It is consumed by the builder, never
// seen by the Dockerfile.
const DriverArg = "LAYERLAB_STORAGE_DRIVER"

// Image is a local image as the builder sees it.
type Image struct {
	ID     string // "" for scratch
	Config dockerspec.DockerOCIImageConfig
}

// Commit is an image a step makes on top of Parent.
type Commit struct {
	// Container is the step's container, whose changes become the new
	// layer; "" for a step that adds no layer (ENV, CMD, ...).
	Container string
	Parent    string // "" on scratch
	Config    dockerspec.DockerOCIImageConfig
	CreatedBy string
	Author    string
	Key       string // the cache key of the step (Backend.Cached)
}

// Backend is what the builder needs of the daemon.
type Backend interface {
	// Image resolves a local image by name or ID.
	Image(ctx context.Context, ref string) (Image, error)
	// CreateContainer makes a (stopped) container of image on the storage
	// driver ("" for the daemon's default).
	CreateContainer(ctx context.Context, image string, cfg *container.Config, driver string) (string, error)
	// Run starts the container, copies its output to w and returns its
	// exit code once it ended.
	Run(ctx context.Context, id string, w io.Writer) (int, error)
	// WithRootfs runs fn on the stopped container's mounted rootfs.
	WithRootfs(ctx context.Context, id string, fn func(root string) error) error
	RemoveContainer(ctx context.Context, id string) error
	// Commit makes the image c describes and returns its ID.
	Commit(ctx context.Context, c Commit) (string, error)
	// Cached returns the image a step with key made from parent before.
	Cached(ctx context.Context, parent, key string) (string, bool)
	Tag(ctx context.Context, id, ref string) error
}

// Options are a build's settings (POST /build's query).
type Options struct {
	Dockerfile  string // path in the context; "" is Dockerfile
	Tags        []string
	BuildArgs   map[string]*string
	Labels      map[string]string
	Target      string
	NoCache     bool
	Remove      bool // remove the intermediate containers after a successful build
	ForceRemove bool // ... also after a failed one
	Quiet       bool
	// Driver is the storage driver the build's containers use; "" takes
	// the DriverArg build argument, else the daemon's default.
	Driver string
}

// Output receives a build's progress.
type Output interface {
	Stream(text string) // lines for the user (`{"stream": ...}`)
	Aux(id string)      // the built image's ID (`{"aux": {"ID": ...}}`)
}

// Builder runs builds on a Backend, with scratch space under tmp.
type Builder struct {
	b   Backend
	tmp string
}

// New returns a Builder; tmp must exist (the daemon's temporary
// directory, where contexts are unpacked).
func New(b Backend, tmp string) *Builder { return &Builder{b: b, tmp: tmp} }

// Build reads the context tar (plain or gzip-compressed) in r, builds the
// Dockerfile it holds as o says and returns the image ID. Progress goes to
// out; an error ends the build (the caller reports it).
func (bd *Builder) Build(ctx context.Context, r io.Reader, o Options, out Output) (string, error) {
	args := map[string]*string{}
	for k, v := range o.BuildArgs {
		args[k] = v
	}
	if v, ok := args[DriverArg]; ok {
		if o.Driver == "" && v != nil {
			o.Driver = *v
		}
		delete(args, DriverArg)
	}
	o.BuildArgs = args
	dir, err := os.MkdirTemp(bd.tmp, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bc, err := openContext(ctx, r, dir, o.Dockerfile)
	if err != nil {
		return "", err
	}
	plan, err := parse(bc.dockerfile, o)
	if err != nil {
		return "", err
	}
	s := &session{b: bd.b, o: o, out: out, ctx: bc, plan: plan, tmp: dir, consumed: map[string]bool{}}
	id, err := s.run(ctx)
	if err != nil {
		return "", err
	}
	var unused []string
	for k := range o.BuildArgs {
		if !s.consumed[k] && !predefined[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		s.say("[Warning] One or more build-args [%s] were not consumed\n", strings.Join(unused, " "))
	}
	out.Aux(id)
	s.say("Successfully built %s\n", short(id))
	for _, t := range o.Tags {
		if err := bd.b.Tag(ctx, id, t); err != nil {
			return "", err
		}
		s.say("Successfully tagged %s\n", t)
	}
	if o.Quiet {
		// All that `docker build -q` prints, as dockerd sends it.
		out.Stream(id + "\n")
	}
	return id, nil
}

// short is an ID as docker prints it: 12 hex digits.
func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ParseArgs reads the buildargs query parameter: a JSON object of names
// to values (null: take the value from the environment, which a daemon
// does not have, so the ARG's default).
func ParseArgs(s string) (map[string]*string, error) {
	out := map[string]*string{}
	if s == "" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("buildargs %q: want a JSON object of strings: %w: %w", s, drivers.ErrInvalidArgument, err)
	}
	for k := range out {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("buildargs: bad name %q: %w", k, drivers.ErrInvalidArgument)
		}
	}
	return out, nil
}

// ParseLabels reads the labels query parameter: a JSON object of strings.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("labels %q: want a JSON object of strings: %w: %w", s, drivers.ErrInvalidArgument, err)
	}
	return out, nil
}
