package executor_test

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/executor"
)

// TestDefaultSpec checks the spec a Docker create gets (no root needed;
// the container tests run these specs for real).
func TestDefaultSpec(t *testing.T) {
	s, err := executor.DefaultSpec([]string{"sh"}, "/rootfs", executor.SpecOpts{Env: []string{"A=1"}, Terminal: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{executor.DefaultPath, "A=1", "TERM=xterm"}; !slices.Equal(s.Process.Env, want) {
		t.Errorf("env = %q, want %q", s.Process.Env, want)
	}
	if s.Process.Cwd != "/" || s.Process.User.UID != 0 || !s.Process.NoNewPrivileges || s.Root.Path != "/rootfs" {
		t.Errorf("process = %+v, root %+v: want cwd /, uid 0, no new privileges, root /rootfs", s.Process, s.Root)
	}
	if !hasNamespace(s, specs.NetworkNamespace) || !hasNamespace(s, specs.PIDNamespace) {
		t.Errorf("namespaces %v: want network none (a netns) and a pid namespace", s.Linux.Namespaces)
	}
	if s.Linux.CgroupsPath != "" {
		t.Errorf("cgroups path %q: the executor fills it in", s.Linux.CgroupsPath)
	}

	s, err = executor.DefaultSpec([]string{"sh"}, "/rootfs", executor.SpecOpts{Env: []string{"PATH=/bin"}, Network: executor.NetworkHost})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Env, []string{"PATH=/bin"}) {
		t.Errorf("env = %q: a PATH the caller sets stays the only one", s.Process.Env)
	}
	if hasNamespace(s, specs.NetworkNamespace) {
		t.Errorf("network host: namespaces %v hold a network namespace", s.Linux.Namespaces)
	}

	for name, call := range map[string]func() error{
		"no command": func() error { _, err := executor.DefaultSpec(nil, "/rootfs", executor.SpecOpts{}); return err },
		"bad network": func() error {
			_, err := executor.DefaultSpec([]string{"sh"}, "/rootfs", executor.SpecOpts{Network: "bridge"})
			return err
		},
	} {
		if err := call(); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

func hasNamespace(s *specs.Spec, ns specs.LinuxNamespaceType) bool {
	return slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == ns })
}
