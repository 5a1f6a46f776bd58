package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers"
)

// session is one build under way.
type session struct {
	b        Backend
	o        Options
	out      Output
	ctx      *buildContext
	plan     *plan
	tmp      string
	consumed map[string]bool // build args some ARG used
	step     int
	stages   []string // the image each finished stage made
}

// stage is the state of the stage being built.
type stage struct {
	img    string // the current image; "" on scratch before any step
	cfg    dockerspec.DockerOCIImageConfig
	author string
	args   map[string]string // the ARGs in effect
	cmdSet bool              // a CMD of this stage (ENTRYPOINT keeps it)
}

func (s *session) say(format string, a ...any) {
	if !s.o.Quiet {
		s.out.Stream(fmt.Sprintf(format, a...))
	}
}

// run builds every stage of the plan and returns the last one's image.
func (s *session) run(ctx context.Context) (string, error) {
	for i := range s.plan.stages {
		st, err := s.from(ctx, &s.plan.stages[i])
		if err != nil {
			return "", err
		}
		for _, cmd := range s.plan.stages[i].Commands {
			s.step++
			s.say("Step %d/%d : %s\n", s.step, s.plan.steps, cmd)
			if err := s.dispatch(ctx, st, cmd); err != nil {
				return "", err
			}
		}
		s.stages = append(s.stages, st.img)
	}
	last := s.stages[len(s.stages)-1]
	if last == "" {
		return "", fmt.Errorf("no image was generated: the last stage starts from scratch and adds nothing: %w", drivers.ErrInvalidArgument)
	}
	return last, nil
}

// env is what ${NAME} expands to: the ARGs in effect, the config's ENV
// over them.
type env map[string]string

func (e env) Get(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e env) Keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (st *stage) env() env {
	e := env{}
	for k, v := range st.args {
		e[k] = v
	}
	for _, kv := range st.cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		e[k] = v
	}
	return e
}

func (s *session) expander(e env) instructions.SingleWordExpander {
	lex := shell.NewLex(s.plan.escape)
	return func(word string) (string, error) {
		out, _, err := lex.ProcessWord(word, e)
		return out, err
	}
}

// from starts a stage: its base (an earlier stage, scratch or a local
// image), then the base's ONBUILD triggers.
func (s *session) from(ctx context.Context, fs *instructions.Stage) (*stage, error) {
	s.step++
	s.say("Step %d/%d : %s\n", s.step, s.plan.steps, fs.SourceCode)
	meta := env{}
	for _, a := range s.plan.meta {
		for _, kv := range a.Args {
			if v, ok := s.o.BuildArgs[kv.Key]; ok && v != nil {
				meta[kv.Key] = *v
				s.consumed[kv.Key] = true
			} else if kv.Value != nil {
				meta[kv.Key] = *kv.Value
			}
		}
	}
	base, err := s.expander(meta)(fs.BaseName)
	if err != nil {
		return nil, fmt.Errorf("FROM %s: %w: %w", fs.BaseName, err, drivers.ErrInvalidArgument)
	}
	if fs.Platform != "" && fs.Platform != "linux/amd64" && fs.Platform != "linux" {
		return nil, fmt.Errorf("FROM --platform=%s: layerlabd builds linux/amd64 only: %w", fs.Platform, drivers.ErrNotImplemented)
	}
	st := &stage{args: map[string]string{}}
	switch i, ok := s.stageIndex(base); {
	case ok:
		img, err := s.b.Image(ctx, s.stages[i])
		if err != nil {
			return nil, err
		}
		st.img, st.cfg = img.ID, img.Config
	case strings.EqualFold(base, "scratch"):
	default:
		img, err := s.b.Image(ctx, base)
		if err != nil {
			return nil, fmt.Errorf("FROM %s: %w (layerlabd builds from local images: docker load it, or build it first)", base, err)
		}
		st.img, st.cfg = img.ID, img.Config
	}
	if st.img != "" {
		s.say(" ---> %s\n", short(st.img))
	}
	// A stage's own metadata ARGs see the meta values when they name one
	// without a default (ARG NAME inside the stage).
	st.metaDefaults(meta)
	if n := len(st.cfg.OnBuild); n > 0 {
		triggers := st.cfg.OnBuild
		st.cfg.OnBuild = nil // the child does not pass them on
		s.say("# Executing %d build trigger%s\n", n, map[bool]string{true: "s"}[n > 1])
		for _, expr := range triggers {
			cmd, err := trigger(expr)
			if err != nil {
				return nil, err
			}
			if err := s.dispatch(ctx, st, cmd); err != nil {
				return nil, fmt.Errorf("ONBUILD trigger %q: %w", expr, err)
			}
		}
	}
	return st, nil
}

// metaDefaults remembers the meta ARG values for ARGs of the stage.
func (st *stage) metaDefaults(meta env) {
	st.args = map[string]string{}
	for k, v := range meta {
		st.args["\x00meta:"+k] = v
	}
}

// stageIndex finds an earlier stage by name or number.
func (s *session) stageIndex(name string) (int, bool) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < len(s.stages) {
		return n, true
	}
	for i := range s.stages {
		if s.plan.stages[i].Name != "" && strings.EqualFold(s.plan.stages[i].Name, name) {
			return i, true
		}
	}
	return 0, false
}

// dispatch runs one instruction on the stage.
func (s *session) dispatch(ctx context.Context, st *stage, cmd instructions.Command) error {
	if _, isRun := cmd.(*instructions.RunCommand); !isRun {
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			if err := ex.Expand(s.expander(st.visibleEnv())); err != nil {
				return fmt.Errorf("%s: %w: %w", cmd, err, drivers.ErrInvalidArgument)
			}
		}
	}
	cfg := &st.cfg
	var text string // the history's words of a step that adds no layer
	switch c := cmd.(type) {
	case *instructions.RunCommand:
		return s.runStep(ctx, st, c)
	case *instructions.CopyCommand:
		return s.copyStep(ctx, st, copySpec{c.SourcesAndDest, c.From, c.Chown, c.Chmod, c.Link, c.Parents, c.ExcludePatterns, false, c.String()})
	case *instructions.AddCommand:
		if c.Checksum != "" || c.KeepGitDir != nil || c.Unpack != nil {
			return fmt.Errorf("%s: ADD --checksum, --keep-git-dir and --unpack need BuildKit, which layerlabd does not run: %w", c, drivers.ErrNotImplemented)
		}
		return s.copyStep(ctx, st, copySpec{c.SourcesAndDest, "", c.Chown, c.Chmod, c.Link, false, c.ExcludePatterns, true, c.String()})
	case *instructions.EnvCommand:
		var words []string
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			words = append(words, kv.Key+"="+kv.Value)
		}
		text = "ENV " + strings.Join(words, " ")
	case *instructions.MaintainerCommand:
		st.author = c.Maintainer
		text = "MAINTAINER " + c.Maintainer
	case *instructions.LabelCommand:
		var words []string
		for _, kv := range c.Labels {
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			cfg.Labels[kv.Key] = kv.Value
			words = append(words, kv.Key+"="+kv.Value)
		}
		text = "LABEL " + strings.Join(words, " ")
	case *instructions.WorkdirCommand:
		p := c.Path
		if !path.IsAbs(p) {
			p = path.Join("/", cfg.WorkingDir, p)
		}
		cfg.WorkingDir = path.Clean(p)
		return s.workdirStep(ctx, st, "/bin/sh -c #(nop)  WORKDIR "+cfg.WorkingDir)
	case *instructions.UserCommand:
		cfg.User = c.User
		text = "USER " + c.User
	case *instructions.ExposeCommand:
		var ports []string
		for _, p := range c.Ports {
			p, err := s.expander(st.visibleEnv())(p)
			if err != nil {
				return fmt.Errorf("%s: %w: %w", c, err, drivers.ErrInvalidArgument)
			}
			port, err := exposedPort(p)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			if cfg.ExposedPorts == nil {
				cfg.ExposedPorts = map[string]struct{}{}
			}
			cfg.ExposedPorts[port] = struct{}{}
			ports = append(ports, port)
		}
		text = "EXPOSE " + strings.Join(ports, " ")
	case *instructions.VolumeCommand:
		for _, v := range c.Volumes {
			if v == "" {
				return fmt.Errorf("%s: VOLUME specified can not be an empty string: %w", c, drivers.ErrInvalidArgument)
			}
			if cfg.Volumes == nil {
				cfg.Volumes = map[string]struct{}{}
			}
			cfg.Volumes[v] = struct{}{}
		}
		text = "VOLUME " + fmt.Sprint(c.Volumes)
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
		text = "STOPSIGNAL " + c.Signal
	case *instructions.CmdCommand:
		cfg.Cmd = st.cmdline(c.ShellDependantCmdLine)
		st.cmdSet = true
		text = "CMD " + jsonText(cfg.Cmd)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = st.cmdline(c.ShellDependantCmdLine)
		if !st.cmdSet {
			cfg.Cmd = nil // a base image's CMD was meant for its own ENTRYPOINT
		}
		text = "ENTRYPOINT " + jsonText(cfg.Entrypoint)
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
		text = "HEALTHCHECK " + jsonText(c.Health.Test)
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(c.Shell)
		text = "SHELL " + jsonText(c.Shell)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
		text = "ONBUILD " + c.Expression
	case *instructions.ArgCommand:
		var words []string
		for _, kv := range c.Args {
			v, set := st.args["\x00meta:"+kv.Key]
			if kv.Value != nil {
				v, set = *kv.Value, true
			}
			if bv, ok := s.o.BuildArgs[kv.Key]; ok && bv != nil {
				v, set = *bv, true
				s.consumed[kv.Key] = true
			} else if ok {
				s.consumed[kv.Key] = true
			}
			if set {
				st.args[kv.Key] = v
			} else {
				st.args[kv.Key] = ""
			}
			words = append(words, kv.String())
		}
		text = "ARG " + strings.Join(words, " ")
	default:
		return fmt.Errorf("%s: instruction not supported by layerlabd's builder: %w", cmd, drivers.ErrNotImplemented)
	}
	return s.commitMeta(ctx, st, "/bin/sh -c #(nop)  "+text)
}

// visibleEnv is env without the meta ARG values a stage has not declared.
func (st *stage) visibleEnv() env {
	e := st.env()
	for k := range e {
		if strings.HasPrefix(k, "\x00") {
			delete(e, k)
		}
	}
	return e
}

// cmdline is a RUN, CMD or ENTRYPOINT's argv: the exec form as given, the
// shell form run by the stage's SHELL (/bin/sh -c by default).
func (st *stage) cmdline(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return slices.Clone(c.CmdLine)
	}
	sh := st.cfg.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
}

// commitMeta records a step that adds no layer, or takes it from the
// cache.
func (s *session) commitMeta(ctx context.Context, st *stage, createdBy string) error {
	cfgJSON, err := json.Marshal(st.cfg)
	if err != nil {
		return err
	}
	key := cacheKey("meta", createdBy, st.author, string(cfgJSON))
	if s.cached(ctx, st, key) {
		return nil
	}
	id, err := s.b.Commit(ctx, Commit{Parent: st.img, Config: st.cfg, CreatedBy: createdBy, Author: st.author, Key: key})
	if err != nil {
		return err
	}
	st.img = id
	s.say(" ---> %s\n", short(id))
	return nil
}

// cached moves the stage to the image the cache holds for key, if any.
func (s *session) cached(ctx context.Context, st *stage, key string) bool {
	if s.o.NoCache {
		return false
	}
	id, ok := s.b.Cached(ctx, st.img, key)
	if !ok {
		return false
	}
	st.img = id
	s.say(" ---> Using cache\n ---> %s\n", short(id))
	return true
}

// cacheKey hashes a step's parts.
func cacheKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\x00", len(p), p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// runStep runs a RUN instruction in a container of the current image and
// commits what it changed.
func (s *session) runStep(ctx context.Context, st *stage, c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return fmt.Errorf("%s: RUN --%s needs BuildKit, which layerlabd does not run: %w", c, c.FlagsUsed[0], drivers.ErrNotImplemented)
	}
	if len(c.Files) > 0 {
		return fmt.Errorf("%s: heredocs need BuildKit, which layerlabd does not run: %w", c, drivers.ErrNotImplemented)
	}
	argv := st.cmdline(c.ShellDependantCmdLine)
	if len(argv) == 0 {
		return fmt.Errorf("%s: nothing to run: %w", c, drivers.ErrInvalidArgument)
	}
	// The build arguments in effect reach the command as environment
	// variables, and the history and cache key name them (the "|N"
	// prefix of dockerd), except the predefined proxy ones.
	var argEnv, recorded []string
	for _, k := range st.visibleEnv().Keys() {
		v, ok := st.args[k]
		if !ok || slices.ContainsFunc(st.cfg.Env, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			continue
		}
		argEnv = append(argEnv, k+"="+v)
		if !predefined[k] {
			recorded = append(recorded, k+"="+v)
		}
	}
	// A predefined argument reaches RUN without an ARG, as in dockerd.
	for k := range predefined {
		if v, ok := s.o.BuildArgs[k]; ok && v != nil {
			if _, declared := st.args[k]; !declared {
				argEnv = append(argEnv, k+"="+*v)
			}
		}
	}
	slices.Sort(argEnv)
	createdBy := strings.Join(argv, " ")
	if len(recorded) > 0 {
		createdBy = fmt.Sprintf("|%d %s %s", len(recorded), strings.Join(recorded, " "), createdBy)
	}
	key := cacheKey("run", createdBy)
	if s.cached(ctx, st, key) {
		return nil
	}
	if err := s.ensureBase(ctx, st); err != nil {
		return err
	}
	id, err := s.b.CreateContainer(ctx, st.img, &container.Config{
		Image: st.img, Entrypoint: argv[:1], Cmd: argv[1:], Env: argEnv, WorkingDir: st.cfg.WorkingDir, User: st.cfg.User,
	}, s.o.Driver)
	if err != nil {
		return err
	}
	s.say(" ---> Running in %s\n", short(id))
	code, err := s.b.Run(ctx, id, streamWriter{s})
	if err == nil && code != 0 {
		err = &RunError{Command: strings.Join(argv, " "), Code: code}
	}
	return s.commitContainer(ctx, st, id, createdBy, key, err)
}

// commitContainer commits the step's container (unless the step failed)
// and removes it as rm and forcerm say.
func (s *session) commitContainer(ctx context.Context, st *stage, id, createdBy, key string, stepErr error) error {
	if stepErr != nil {
		if s.o.ForceRemove {
			_ = s.b.RemoveContainer(context.WithoutCancel(ctx), id)
		}
		return stepErr
	}
	img, err := s.b.Commit(ctx, Commit{Container: id, Parent: st.img, Config: st.cfg, CreatedBy: createdBy, Author: st.author, Key: key})
	if err != nil {
		if s.o.ForceRemove {
			_ = s.b.RemoveContainer(context.WithoutCancel(ctx), id)
		}
		return err
	}
	if s.o.Remove || s.o.ForceRemove {
		if err := s.b.RemoveContainer(ctx, id); err != nil {
			return err
		}
		s.say("Removing intermediate container %s\n", short(id))
	}
	st.img = img
	s.say(" ---> %s\n", short(img))
	return nil
}

// ensureBase gives a scratch stage an image to make a container of: one
// with no layer and no history, shared by every build from scratch.
func (s *session) ensureBase(ctx context.Context, st *stage) error {
	if st.img != "" {
		return nil
	}
	if id, ok := s.b.Cached(ctx, "", "scratch"); ok {
		st.img = id
		return nil
	}
	id, err := s.b.Commit(ctx, Commit{Key: "scratch"})
	if err != nil {
		return err
	}
	st.img = id
	return nil
}

// streamWriter sends a container's output to the build's stream.
type streamWriter struct{ s *session }

func (w streamWriter) Write(p []byte) (int, error) {
	w.s.say("%s", p)
	return len(p), nil
}

// setEnv sets k=v in env, replacing an earlier k.
func setEnv(env []string, k, v string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(e string) bool { return strings.HasPrefix(e, k+"=") || e == k })
	return append(out, k+"="+v)
}

// exposedPort checks an EXPOSE word (80, 80/tcp, 53/udp, 8000-8010) and
// gives it a protocol.
func exposedPort(p string) (string, error) {
	port, proto, ok := strings.Cut(p, "/")
	if !ok {
		proto = "tcp"
	}
	switch strings.ToLower(proto) {
	case "tcp", "udp", "sctp":
	default:
		return "", fmt.Errorf("invalid proto %q in port %q: want tcp, udp or sctp: %w", proto, p, drivers.ErrInvalidArgument)
	}
	nums := strings.SplitN(port, "-", 2)
	for _, n := range nums {
		if v, err := strconv.Atoi(n); err != nil || v < 0 || v > 65535 {
			return "", fmt.Errorf("invalid port %q: want a number from 0 to 65535 or a range: %w", p, drivers.ErrInvalidArgument)
		}
	}
	return port + "/" + strings.ToLower(proto), nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// RunError is a RUN whose command failed; the stream's error carries its
// code, which `docker build` exits with, as with dockerd.
type RunError struct {
	Command string
	Code    int
}

func (e *RunError) Error() string {
	return fmt.Sprintf("The command '%s' returned a non-zero code: %d", e.Command, e.Code)
}
