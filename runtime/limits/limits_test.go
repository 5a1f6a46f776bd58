package limits

import (
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/blkiodev"
	"github.com/docker/docker/api/types/container"

	"github.com/layerlab/layerlab/drivers"
)

// v1Host is this host's kind: every v1 controller but blkio.weight,
// with the CPUs and memory nodes of the machine the test runs on.
func v1Host() *Host {
	h := Probe()
	h.MemoryLimit, h.SwapLimit, h.MemoryReservation, h.OomKillDisable, h.MemorySwappiness = true, true, true, true, true
	h.CPUShares, h.CPUCfs, h.Cpuset, h.PidsLimit = true, true, true, true
	h.BlkioReadBpsDevice, h.BlkioWriteBpsDevice, h.BlkioReadIOpsDevice, h.BlkioWriteIOpsDevice = true, true, true, true
	h.BlkioWeight, h.BlkioWeightDevice = false, false
	return h
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    container.Resources
		want string // error text, "" for none
	}{
		{"memory below 6MB", container.Resources{Memory: 4 << 20}, "Minimum memory limit allowed is 6MB"},
		{"swap below memory", container.Resources{Memory: 64 << 20, MemorySwap: 32 << 20}, "Minimum memoryswap limit should be larger than memory limit"},
		{"swap without memory", container.Resources{MemorySwap: 64 << 20}, "You should always set the Memory limit when using Memoryswap limit"},
		{"reservation above memory", container.Resources{Memory: 32 << 20, MemoryReservation: 64 << 20}, "Minimum memory limit can not be less than memory reservation limit"},
		{"cpus and period", container.Resources{NanoCPUs: 1e9, CPUPeriod: 50000}, "Conflicting options: Nano CPUs and CPU Period cannot both be set"},
		{"cpus and quota", container.Resources{NanoCPUs: 1e9, CPUQuota: 50000}, "Conflicting options: Nano CPUs and CPU Quota cannot both be set"},
		{"too many cpus", container.Resources{NanoCPUs: 1000e9}, "Range of CPUs is from 0.01 to"},
		{"period too short", container.Resources{CPUPeriod: 500}, "CPU cfs period can not be less than 1ms"},
		{"quota too small", container.Resources{CPUQuota: 500}, "CPU cfs quota can not be less than 1ms"},
		{"cpuset outside", container.Resources{CpusetCpus: "4000"}, "Requested CPUs are not available - requested 4000, available: "},
		{"cpuset garbage", container.Resources{CpusetCpus: "a-b"}, "Invalid value a-b for cpuset cpus"},
		{"mems outside", container.Resources{CpusetMems: "63"}, "Requested memory nodes are not available - requested 63, available: "},
		{"fine", container.Resources{Memory: 64 << 20, NanoCPUs: 5e8, CpusetCpus: "0", CPUShares: 512}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Check(&tc.r, v1Host(), false)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, drivers.ErrInvalidArgument)):
				t.Fatalf("Check: %v, want an invalid argument saying %q", err, tc.want)
			}
		})
	}
	// What the host lacks is dropped with dockerd's warning.
	r := container.Resources{BlkioWeight: 300}
	w, err := Check(&r, v1Host(), false)
	if err != nil || len(w) != 1 || !strings.Contains(w[0], "Block I/O weight") || r.BlkioWeight != 0 {
		t.Errorf("blkio weight on a host without it: %v %v, weight %d", w, err, r.BlkioWeight)
	}
}

func TestSpec(t *testing.T) {
	r := container.Resources{Memory: 64 << 20, MemorySwap: 128 << 20, NanoCPUs: 5e8, CPUShares: 512, CpusetCpus: "0"}
	pids := int64(50)
	r.PidsLimit = &pids
	s, err := Spec(r)
	if err != nil {
		t.Fatal(err)
	}
	if *s.Memory.Limit != 64<<20 || *s.Memory.Swap != 128<<20 || *s.CPU.Quota != 50000 || *s.CPU.Period != 100000 || *s.CPU.Shares != 512 || s.CPU.Cpus != "0" || *s.Pids.Limit != 50 || s.BlockIO != nil {
		t.Errorf("Spec: %+v %+v %+v", s.Memory, s.CPU, s.Pids)
	}
	_, err = Spec(container.Resources{BlkioDeviceWriteBps: []*blkiodev.ThrottleDevice{{Path: "/dev/null", Rate: 1}}})
	if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("Spec of /dev/null as a block device: %v", err)
	}
}

func TestMerge(t *testing.T) {
	cur := container.Resources{Memory: 64 << 20, MemorySwap: 128 << 20, NanoCPUs: 5e8, CpusetCpus: "0"}
	if err := Merge(&cur, container.Resources{Memory: 32 << 20, CPUShares: 256}); err != nil {
		t.Fatal(err)
	}
	if cur.Memory != 32<<20 || cur.MemorySwap != 128<<20 || cur.CPUShares != 256 || cur.NanoCPUs != 5e8 || cur.CpusetCpus != "0" {
		t.Errorf("Merge: %+v", cur)
	}
	for _, upd := range []container.Resources{{Memory: 256 << 20}, {CPUPeriod: 50000}, {CPUQuota: 50000}} {
		if err := Merge(&cur, upd); !errors.Is(err, drivers.ErrFailedPrecondition) {
			t.Errorf("Merge %+v: %v, want a conflict", upd, err)
		}
	}
}
