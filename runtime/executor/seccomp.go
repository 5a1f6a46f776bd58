//go:build seccomp

package executor

import (
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SeccompFilters says whether this build filters containers' system
// calls: libcontainer does only when built with the seccomp tag, against
// libseccomp (make builds and tests with it).
const SeccompFilters = true

// defaultSeccomp is Docker's default profile (moby/profiles), fitted to
// the spec's capabilities and architecture.
func defaultSeccomp(s *specs.Spec) (*specs.LinuxSeccomp, error) {
	return seccomp.GetDefaultProfile(s)
}
