package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
)

// Update implements Container: libcontainer's Set writes res into the
// container's cgroup, as `runc update` does. A field res leaves nil keeps
// its value; the device rules stay.
func (c *container) Update(ctx context.Context, res *specs.LinuxResources) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	noDevices := *res
	noDevices.Devices = nil
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: c.id, Spec: &specs.Spec{Linux: &specs.Linux{Resources: &noDevices}}}, nil)
	if err != nil {
		return fmt.Errorf("container %s: update: %w: %w", c.id, err, drivers.ErrInvalidArgument)
	}
	cfg := c.lc.Config()
	cg.Resources.Devices = cfg.Cgroups.Resources.Devices
	cgroup := *cfg.Cgroups
	cgroup.Resources = cg.Resources
	cfg.Cgroups = &cgroup
	return c.wrap("update", c.lc.Set(cfg))
}

// Update implements Container with `runc update --resources`.
func (c *runcContainer) Update(ctx context.Context, res *specs.LinuxResources) error {
	if res == nil {
		return nil
	}
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("container %s: update: %w", c.id, err)
	}
	f := filepath.Join(c.bundle, "resources.json")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		return fmt.Errorf("container %s: update: %w", c.id, err)
	}
	defer os.Remove(f)
	if _, err := c.e.runc(ctx, "update", "--resources", f, c.id); err != nil {
		return fmt.Errorf("container %s: %w", c.id, err)
	}
	return nil
}
