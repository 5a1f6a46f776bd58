package executor

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

func TestRlimits(t *testing.T) {
	got, err := rlimits([]specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048}, {Type: "RLIMIT_NPROC", Soft: 5, Hard: 5}})
	if err != nil || len(got) != 2 || got[0].Type != unix.RLIMIT_NOFILE || got[0].Soft != 1024 || got[0].Hard != 2048 || got[1].Type != unix.RLIMIT_NPROC {
		t.Fatalf("rlimits: %+v %v", got, err)
	}
	if _, err := rlimits([]specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Fatalf("an unknown rlimit: %v", err)
	}
}
