// Package overlay holds the two overlayfs drivers: overlay2, which stacks a
// snapshot's ancestors as multiple lowerdirs, and overlay, the classic
// single-lowerdir driver whose committed layers each hold a complete tree
// hardlinked to their parent's.
//
// Layout under home:
//
//	metadata.db            snapshot records (drivers/storage)
//	snapshots/<id>/fs      the upper directory, or the whole tree of a base
//	snapshots/<id>/work    overlay's workdir (active snapshots with a parent)
//	snapshots/<id>/root    overlay only: the complete tree of a committed layer
//	l/<id>                 overlay2 only: symlink to ../snapshots/<id>/fs
package overlay

import (
	"context"
	"fmt"
	"strings"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Driver names.
const (
	NameOverlay  = "overlay"
	NameOverlay2 = "overlay2"
)

// MaxDepth is the kernel's limit on stacked lower layers (OVL_MAX_STACK).
const MaxDepth = 500

func capabilities(multiLower bool) drivers.Capabilities {
	c := drivers.Capabilities{
		Strategy:    drivers.CopyOnWrite,
		Granularity: drivers.GranularityFile,
		QuotaNote:   "classic overlay cannot limit a snapshot's size; overlay2 can, with xfs project quota",
		Kernel:      []string{"overlay filesystem", "d_type on the backing filesystem"},
	}
	if multiLower {
		// Overlay2 turns Quota on at open when the home's xfs enforces
		// project quota (see setupQuota).
		c.QuotaNote = "size limits need the home on xfs mounted with prjquota: each active snapshot's upper directory is then an xfs project with a hard block limit"
		c.MaxDepth = MaxDepth
		c.Kernel = append(c.Kernel, "multiple lowerdirs (Linux 4.0)")
		c.Notes = append(c.Notes, "lowerdirs are short symlinks in l/; options longer than a page are mounted with paths relative to l/")
	} else {
		c.Notes = append(c.Notes, "each committed layer is a complete tree hardlinked to its parent's; mounts use one lowerdir")
	}
	return c
}

// capabilitiesAt is what the driver does with its home on fstype: overlay
// copies up with copy_file_range, which clones extents where the backing
// filesystem reflinks (xfs with reflink=1, btrfs), so a copy-up there costs
// metadata and only the written blocks take new space.
func capabilitiesAt(multiLower bool, home string) (drivers.Capabilities, error) {
	c := capabilities(multiLower)
	reflink, err := core.Reflinks(home)
	if err != nil {
		return c, err
	}
	if reflink {
		c.Granularity = drivers.GranularityBlock
		c.Notes = append(c.Notes, "copy-up clones extents on "+core.FSType(home)+" (reflink): a first write copies the file's metadata, not its data")
	}
	return c, nil
}

// baseOptions are overlay options every mount gets: each feature below is
// pinned off wherever the kernel has it (its module parameter exists),
// whatever the parameter's current default, which root may change at any
// time. With the index feature on, an upper that outlives its lower stack
// fails to mount again. With redirect_dir on, renaming a directory that
// comes from a lower leaves a redirect in the upper instead of copying the
// directory up; with metacopy on, a chown or chmod copies up metadata only.
// Either way the upper no longer holds what the snapshot changed, which
// classic overlay's Commit and layer diffs of an upper read it as (classic
// Commit refuses such uppers: see checkUpper). Drivers read the parameters
// once at open, off the Prepare path the benchmarks time.
func baseOptions() []string {
	var opts []string
	for _, feature := range []string{"index", "redirect_dir", "metacopy"} {
		if kernel.Param("overlay", feature) != "" {
			opts = append(opts, feature+"=off")
		}
	}
	return opts
}

// overlayMount describes an overlay mount; volatile applies only with an
// upper directory (a read-only mount has nothing to sync).
func overlayMount(base, lowers []string, upper, work string, volatile bool) drivers.Mount {
	opts := append(append([]string(nil), base...), "lowerdir="+strings.Join(lowers, ":"))
	if upper != "" {
		opts = append(opts, "upperdir="+upper, "workdir="+work)
		if volatile {
			opts = append(opts, "volatile")
		}
	}
	return drivers.Mount{Type: "overlay", Source: "overlay", Options: opts}
}

// declared is what a factory declares: the capabilities and, for `driver
// info`, the volatile option with its caveat.
func declared(multiLower bool) drivers.Capabilities {
	c := capabilities(multiLower)
	c.Notes = append(c.Notes, volatileNote)
	return c
}

// withVolatile is an opened driver's caps, with the caveat when its
// mounts are volatile.
func withVolatile(c drivers.Capabilities, volatile bool) drivers.Capabilities {
	if volatile {
		c.Notes = append(c.Notes, "mounted volatile: "+volatileNote)
	}
	return c
}

// setup checks options, home and the probe before anything touches the
// disk, then lays out home/snapshots.
func setup(name, home string, opts drivers.Options) (core.Dirs, options, error) {
	o, err := parseOptions(name, opts)
	if err != nil {
		return core.Dirs{}, o, err
	}
	if err := core.CheckHome(name, home); err != nil {
		return core.Dirs{}, o, err
	}
	if err := Probe(name, home).Err(name); err != nil {
		return core.Dirs{}, o, err
	}
	dirs, err := core.NewDirs(home)
	return dirs, o, wrap(name, err)
}

// usage measures the upper directory: what the snapshot adds.
func usage(ctx context.Context, dirs core.Dirs, s storage.Snapshot) (drivers.Usage, error) {
	return core.DiskUsage(ctx, dirs.Path(s.ID, "fs"))
}

func wrap(name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}
