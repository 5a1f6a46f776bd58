package limits

import (
	"errors"
	"testing"

	"github.com/docker/docker/api/types/container"
	units "github.com/docker/go-units"

	"github.com/layerlab/layerlab/drivers"
)

func TestDevicesAndRlimits(t *testing.T) {
	r := container.Resources{
		Devices:           []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/dev/xnull", CgroupPermissions: "rw"}},
		DeviceCgroupRules: []string{"c 10:200 rwm", "b *:* r"},
		Ulimits:           []*units.Ulimit{{Name: "nofile", Soft: 1024, Hard: 2048}},
	}
	devs, rules, err := Devices(r)
	if err != nil || len(devs) != 1 || devs[0].Path != "/dev/xnull" || devs[0].Type != "c" || devs[0].Major != 1 || devs[0].Minor != 3 {
		t.Fatalf("Devices: %+v %v", devs, err)
	}
	if len(rules) != 3 || rules[0].Access != "rw" || *rules[1].Major != 10 || *rules[1].Minor != 200 || rules[2].Major != nil || rules[2].Type != "b" {
		t.Fatalf("device rules: %+v", rules)
	}
	rl, err := Rlimits(r)
	if err != nil || len(rl) != 1 || rl[0].Type != "RLIMIT_NOFILE" || rl[0].Soft != 1024 || rl[0].Hard != 2048 {
		t.Fatalf("Rlimits: %+v %v", rl, err)
	}
	for _, bad := range []container.Resources{
		{Devices: []container.DeviceMapping{{PathOnHost: "/etc/hostname"}}},
		{Devices: []container.DeviceMapping{{PathOnHost: "/dev/null", CgroupPermissions: "rwx"}}},
		{Devices: []container.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "rel"}}},
		{DeviceCgroupRules: []string{"c 1:3"}},
		{DeviceCgroupRules: []string{"x 1:3 r"}},
		{DeviceCgroupRules: []string{"c -1:3 r"}},
	} {
		if _, _, err := Devices(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("Devices(%+v): %v, want invalid argument", bad, err)
		}
	}
	if _, err := Rlimits(container.Resources{Ulimits: []*units.Ulimit{{Name: "bogus", Soft: 1, Hard: 1}}}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("an unknown ulimit: %v", err)
	}
	h := v1Host()
	if _, err := checkUnsupported(&container.Resources{DeviceRequests: []container.DeviceRequest{{Count: -1}}}, h); !errors.Is(err, drivers.ErrNotImplemented) {
		t.Errorf("--gpus: %v, want not implemented", err)
	}
	km := container.Resources{KernelMemory: 1 << 20}
	if w, err := checkUnsupported(&km, h); err != nil || len(w) != 1 || km.KernelMemory != 0 {
		t.Errorf("--kernel-memory: %v %v %d, want a warning and the limit dropped", w, err, km.KernelMemory)
	}
}

func FuzzParseCgroupRule(f *testing.F) {
	for _, s := range []string{"c 1:3 rwm", "b *:* r", "a *:* rwm", "c 1:", "", "c 99999999999999999999:1 r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseCgroupRule(s)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("%q: %v does not wrap ErrInvalidArgument", s, err)
			}
			return
		}
		if r.Type != "a" && r.Type != "b" && r.Type != "c" || r.Access == "" {
			t.Fatalf("%q accepted as %+v", s, r)
		}
	})
}
