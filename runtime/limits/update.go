package limits

import (
	"fmt"

	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// conflict is an update that contradicts what the container has, with
// dockerd's words; 409 as dockerd answers.
func conflict(msg string) error { return fmt.Errorf("%s: %w", msg, drivers.ErrFailedPrecondition) }

// Merge applies a docker update's resources to a container's, as dockerd
// does: a zero field leaves the current value; --cpus and
// --cpu-period/--cpu-quota exclude each other across updates too.
func Merge(cur *container.Resources, upd container.Resources) error {
	switch {
	case upd.NanoCPUs > 0 && cur.CPUPeriod > 0:
		return conflict("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
	case upd.NanoCPUs > 0 && cur.CPUQuota > 0:
		return conflict("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
	case upd.CPUPeriod > 0 && cur.NanoCPUs > 0:
		return conflict("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
	case upd.CPUQuota > 0 && cur.NanoCPUs > 0:
		return conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
	}
	// A swap limit below the new memory limit would be refused by the
	// kernel; dockerd asks for both at once. (dockerd also refuses when
	// no swap limit is set at all; nothing stands in the way then.)
	if upd.Memory != 0 && cur.MemorySwap > 0 && upd.Memory > cur.MemorySwap && upd.MemorySwap == 0 {
		return conflict("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
	}
	setInt := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	setInt(&cur.CPUShares, upd.CPUShares)
	setInt(&cur.NanoCPUs, upd.NanoCPUs)
	setInt(&cur.CPUPeriod, upd.CPUPeriod)
	setInt(&cur.CPUQuota, upd.CPUQuota)
	setInt(&cur.CPURealtimePeriod, upd.CPURealtimePeriod)
	setInt(&cur.CPURealtimeRuntime, upd.CPURealtimeRuntime)
	setInt(&cur.Memory, upd.Memory)
	setInt(&cur.MemorySwap, upd.MemorySwap)
	setInt(&cur.MemoryReservation, upd.MemoryReservation)
	if upd.BlkioWeight != 0 {
		cur.BlkioWeight = upd.BlkioWeight
	}
	if upd.CpusetCpus != "" {
		cur.CpusetCpus = upd.CpusetCpus
	}
	if upd.CpusetMems != "" {
		cur.CpusetMems = upd.CpusetMems
	}
	if upd.PidsLimit != nil {
		cur.PidsLimit = upd.PidsLimit // <= 0: unlimited again
	}
	return nil
}
