package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// Validate refuses a configuration that cannot run, before anything is
// made: Run calls it first, so a bad option or a missing --root never
// leaves a loop filesystem, a mount or an empty report behind. Every
// refusal wraps drivers.ErrInvalidArgument.
func (cfg *Config) Validate() error {
	if cfg.Registry == nil {
		return fmt.Errorf("bench: no driver registry: %w", drivers.ErrInvalidArgument)
	}
	p := cfg.Profile
	if p.N < 1 || p.Warmup < 0 {
		return fmt.Errorf("profile %s: %d samples and %d warm-up runs per point: %w: want at least 1 sample and no negative warm-up", p.Name, p.N, p.Warmup, drivers.ErrInvalidArgument)
	}
	all := workloads()
	for _, w := range p.Workloads {
		if all[w] == nil {
			return fmt.Errorf("workload %q: %w; workloads are %s", w, drivers.ErrInvalidArgument, strings.Join(allWorkloads(), ", "))
		}
	}
	if cfg.Root != "" {
		if err := checkRoot(cfg.Root); err != nil {
			return err
		}
	}
	run := map[string]bool{}
	for _, name := range cfg.runDrivers() {
		if _, err := cfg.Registry.Get(name); err != nil {
			return fmt.Errorf("--driver: %w: %w", err, drivers.ErrInvalidArgument)
		}
		run[name] = true
	}
	names := make([]string, 0, len(cfg.Options))
	for name := range cfg.Options {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := cfg.Registry.CheckOptions(name, cfg.Options[name]); err != nil {
			return err
		}
		if !run[name] {
			return fmt.Errorf("options for %s, which this run does not measure: %w; add --driver %s or drop the options", name, drivers.ErrInvalidArgument, name)
		}
	}
	return nil
}

// runDrivers is the drivers a run measures: those named, else every
// registered one (those unavailable here are skipped with a note).
func (cfg *Config) runDrivers() []string {
	if len(cfg.Drivers) > 0 {
		names := append([]string(nil), cfg.Drivers...)
		sort.Strings(names)
		return names
	}
	return cfg.Registry.Names()
}

// checkRoot requires --root to be an existing directory: a mistyped path
// must not become a new directory on whatever filesystem holds it.
func checkRoot(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("--root %q: %w: give an absolute path", root, drivers.ErrInvalidArgument)
	}
	st, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("--root %s: %w: %w", root, drivers.ErrInvalidArgument, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--root %s: %w: not a directory", root, drivers.ErrInvalidArgument)
	}
	return nil
}
