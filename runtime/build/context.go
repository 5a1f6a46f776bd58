package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
)

// maxDockerfile bounds the Dockerfile read into memory.
const maxDockerfile = 4 << 20

// buildContext is a build's context unpacked in a directory, the files
// .dockerignore excludes removed.
type buildContext struct {
	root       string
	dockerfile []byte
}

// openContext unpacks the context tar into dir/context, with the layer
// checks (no entry leaves the directory, no write through a symlink) but
// ".wh." names kept as files (a context is no image layer), reads the
// Dockerfile and applies .dockerignore.
func openContext(ctx context.Context, r io.Reader, dir, dockerfile string) (*buildContext, error) {
	root := filepath.Join(dir, "context")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	if _, err := layer.Apply(ctx, root, r, layer.WithTempDir(dir), layer.LiteralNames()); err != nil {
		return nil, fmt.Errorf("the build context: %w", err)
	}
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	rel, err := contextPath(dockerfile)
	if err != nil {
		return nil, fmt.Errorf("dockerfile %q: %w", dockerfile, err)
	}
	df, err := readIn(root, rel, maxDockerfile)
	if err != nil {
		return nil, fmt.Errorf("cannot locate specified Dockerfile: %s (%w)", dockerfile, err)
	}
	bc := &buildContext{root: root, dockerfile: df}
	patterns, err := ignorePatterns(root, rel)
	if err != nil {
		return nil, err
	}
	if err := prune(root, patterns); err != nil {
		return nil, err
	}
	return bc, nil
}

// contextPath cleans a path given relative to the context root; a path
// that climbs out of it is refused.
func contextPath(p string) (string, error) {
	c := path.Clean(strings.ReplaceAll(p, "\\", "/"))
	c = strings.TrimPrefix(c, "/")
	if c == ".." || strings.HasPrefix(c, "../") || strings.HasPrefix(path.Clean(p), "../") {
		return "", fmt.Errorf("forbidden path outside the build context: %s: %w", p, drivers.ErrInvalidArgument)
	}
	if c == "" {
		c = "."
	}
	return c, nil
}

// readIn reads the regular file rel under root (symlinks resolved inside
// root), at most limit bytes.
func readIn(root, rel string, limit int64) ([]byte, error) {
	p, err := securejoin.SecureJoin(root, rel)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", rel, drivers.ErrInvalidArgument)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d allowed: %w", rel, fi.Size(), limit, drivers.ErrInvalidArgument)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// ignorePatterns reads the Dockerfile's own ignore file
// (Dockerfile.dockerignore next to it) or the context's .dockerignore.
func ignorePatterns(root, dockerfile string) ([]string, error) {
	for _, name := range []string{dockerfile + ".dockerignore", ".dockerignore"} {
		b, err := readIn(root, name, maxDockerfile)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %w", name, drivers.ErrInvalidArgument, err)
		}
		return patterns, nil
	}
	return nil, nil
}

// prune removes what the patterns exclude from the context, as dockerd
// does with the context a client sent (the CLI filters it already; a
// raw API client may not). The Dockerfile was read before.
func prune(root string, patterns []string) error {
	if len(patterns) == 0 {
		return nil
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return fmt.Errorf(".dockerignore: %w: %w", drivers.ErrInvalidArgument, err)
	}
	var gone []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		excluded, err := pm.MatchesOrParentMatches(filepath.ToSlash(rel))
		if err != nil {
			return fmt.Errorf(".dockerignore: %w: %w", drivers.ErrInvalidArgument, err)
		}
		if excluded && !d.IsDir() {
			gone = append(gone, p)
		}
		if excluded && d.IsDir() && !pm.Exclusions() {
			gone = append(gone, p)
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range gone {
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	return nil
}
