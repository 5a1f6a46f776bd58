package vfs

import (
	"fmt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// Probe implements drivers.Factory.Probe.
func Probe(home string) drivers.Probe {
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}}}
	if err := core.CheckHome(Name, home); err != nil {
		p.Reason, p.Class = err.Error(), drivers.ErrInvalidArgument
		return p
	}
	b, err := kernel.BackingOf(home)
	if err != nil {
		p.Reason = fmt.Sprintf("cannot examine the filesystem under %s: %v", home, err)
		return p
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "backing filesystem", Value: b.Type + " at " + b.Path})
	if !kernel.IsRoot() {
		p.Reason = "bind-mounting snapshots needs root (CAP_SYS_ADMIN); run as root"
	}
	return p
}
