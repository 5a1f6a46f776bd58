package build

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/layerlab/layerlab/drivers"
)

// maxSteps bounds the instructions of one build: every RUN or COPY is a
// layer, and no storage driver stacks thousands of them (overlay's mount
// options stop near 128 lower directories, aufs at 127 branches).
const maxSteps = 1000

// predefined are the build arguments usable without an ARG, kept out of
// the history and the cache key as dockerd keeps them.
var predefined = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// plan is a parsed Dockerfile: its stages up to the target.
type plan struct {
	stages []instructions.Stage
	meta   []instructions.ArgCommand // the ARGs before the first FROM
	escape rune
	steps  int // instructions to run, FROMs included, as "Step i/steps" counts them
}

// parse reads the Dockerfile, keeps the stages up to o.Target and adds
// a LABEL step for o.Labels to the last one, as dockerd does.
func parse(dockerfile []byte, o Options) (*plan, error) {
	res, err := parser.Parse(bytes.NewReader(dockerfile))
	if err != nil {
		return nil, fmt.Errorf("dockerfile parse error: %w: %w", drivers.ErrInvalidArgument, err)
	}
	stages, meta, err := instructions.Parse(res.AST, nil)
	if err != nil {
		var unknown *instructions.UnknownInstructionError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("%w (see https://docs.docker.com/reference/dockerfile/ for the instructions): %w", err, drivers.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("%w: %w", err, drivers.ErrInvalidArgument)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("the Dockerfile has no FROM: a build starts from an image (or scratch): %w", drivers.ErrInvalidArgument)
	}
	if o.Target != "" {
		i, ok := instructions.HasStage(stages, strings.ToLower(o.Target))
		if !ok {
			return nil, fmt.Errorf("target stage %q could not be found: %w", o.Target, drivers.ErrInvalidArgument)
		}
		stages = stages[:i+1]
	}
	if len(o.Labels) > 0 {
		keys := make([]string, 0, len(o.Labels))
		for k := range o.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var words []string
		for _, k := range keys {
			words = append(words, strconv.Quote(k)+"="+strconv.Quote(o.Labels[k]))
		}
		line := "LABEL " + strings.Join(words, " ")
		node, err := parser.Parse(strings.NewReader(line))
		if err != nil {
			return nil, fmt.Errorf("--label: %w: %w", drivers.ErrInvalidArgument, err)
		}
		cmd, err := instructions.ParseCommand(node.AST.Children[0])
		if err != nil {
			return nil, fmt.Errorf("--label: %w: %w", drivers.ErrInvalidArgument, err)
		}
		last := &stages[len(stages)-1]
		last.AddCommand(cmd)
	}
	p := &plan{stages: stages, meta: meta, escape: res.EscapeToken}
	for _, s := range stages {
		p.steps += 1 + len(s.Commands)
	}
	if p.steps > maxSteps {
		return nil, fmt.Errorf("the Dockerfile has %d instructions to run; layerlabd builds at most %d (each RUN and COPY is a layer; join commands with &&): %w", p.steps, maxSteps, drivers.ErrInvalidArgument)
	}
	return p, nil
}

// trigger parses one ONBUILD trigger of a base image into its command.
func trigger(expr string) (instructions.Command, error) {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil {
		return nil, err
	}
	if len(res.AST.Children) != 1 {
		return nil, fmt.Errorf("ONBUILD trigger %q: want one instruction: %w", expr, drivers.ErrInvalidArgument)
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, fmt.Errorf("ONBUILD trigger %q: %w: %w", expr, err, drivers.ErrInvalidArgument)
	}
	return cmd, nil
}
