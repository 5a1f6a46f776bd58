package executor

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// rlimitTypes maps the spec's RLIMIT_ names to the kernel's numbers, for
// libcontainer, which takes numbers (the runc binary converts them
// itself; specconv leaves a process's rlimits to its caller).
func rlimitTypes() map[string]int {
	return map[string]int{
		"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
		"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
		"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
		"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
		"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
		"RLIMIT_STACK": unix.RLIMIT_STACK,
	}
}

// rlimits converts the spec's rlimits to libcontainer's.
func rlimits(in []specs.POSIXRlimit) ([]configs.Rlimit, error) {
	types := rlimitTypes()
	out := make([]configs.Rlimit, 0, len(in))
	for _, r := range in {
		t, ok := types[r.Type]
		if !ok {
			return nil, fmt.Errorf("rlimit %q: not a resource limit this kernel knows: %w", r.Type, drivers.ErrInvalidArgument)
		}
		out = append(out, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	return out, nil
}
