// Package builtin is the registry of every driver layerlab carries, for
// the binaries to share: the interface package imports no driver, so the
// list lives here, once.
package builtin

import (
	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/aufs"
	"github.com/layerlab/layerlab/drivers/btrfs"
	"github.com/layerlab/layerlab/drivers/devicemapper"
	"github.com/layerlab/layerlab/drivers/overlay"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/drivers/zfs"
)

// Registry returns a registry of all the drivers, in the order `layerlab
// driver ls` lists them.
func Registry() *drivers.Registry {
	return drivers.NewRegistry(
		vfs.Factory(),
		overlay.OverlayFactory(),
		overlay.Overlay2Factory(),
		aufs.Factory(),
		btrfs.Factory(),
		devicemapper.Factory(),
		zfs.Factory(),
	)
}
