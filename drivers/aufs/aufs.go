// Package aufs is the aufs driver, laid out like overlay2 and mounting the
// way dockerd's aufs graphdriver did: each snapshot is one aufs branch, an
// active snapshot's directory its writable branch, committed ancestors its
// read-only ones, nearest first.
//
// aufs is in no mainline kernel. It is an out-of-tree patch set
// (github.com/sfjro/aufs-standalone) that some distributions built into
// their kernels, Ubuntu 20.04's among them. Nothing in this package has run against aufs on the
// machines layerlab is developed on; the pure parts (mount options, chain
// splitting, whiteout listing) are unit tested, and the driver as a whole
// is meant to be exercised in the aufs Vagrant VM.
//
// Layout under home:
//
//	metadata.db            snapshot records (drivers/storage)
//	snapshots/<id>/fs      the branch: writable while active, read-only once committed
//	l/<id>                 symlink to ../snapshots/<id>/fs, the short path mounts name
//
// Whiteouts: aufs records a deletion in a writable branch as an empty file
// .wh.<name> beside the deleted name, and marks a directory whose lower
// contents are hidden (a directory removed and made again) with a file
// .wh..wh..opq inside it. The OCI image layer format took both names from
// aufs, so an aufs branch is already an OCI layer diff, less aufs's own
// bookkeeping (.wh..wh.aufs, .wh..wh.plnk, .wh..wh.orph in the branch root),
// which Whiteouts reports apart so export code can drop it.
package aufs

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/storage"
)

// Name is the driver's registry name.
const Name = "aufs"

// DefaultMaxBranches is aufs's default limit on branches in one mount
// (CONFIG_AUFS_BRANCH_MAX_127, the Kconfig default and Ubuntu's choice;
// 511, 1023 and 32767 are the others), assumed when the running kernel's
// cannot be read. An active snapshot's writable branch counts, so it takes
// one parent fewer than a view. It is why Docker capped images at 125
// layers: a container's writable branch and its init layer took the other
// two of 127.
const DefaultMaxBranches = 127

// xinoDir holds the external inode number (xino) files. aufs refuses an
// xino file on xfs and btrfs (au_test_fs_bad_xino: they do not keep
// i_size/i_blocks the way xino needs) and by default puts it on the first
// writable branch that can hold it, else /tmp/.aufs.xino; naming a tmpfs
// path keeps that choice fixed whatever the home is on. dockerd used
// /dev/shm for the same reason (moby#826).
const xinoDir = "/dev/shm"

// Notes every aufs driver carries.
const (
	noteUnverified = "NOT verified on layerlab's CI kernel (it has no aufs): only option building, chain splitting and whiteout listing are unit tested; the conformance suites are meant to run in the aufs Vagrant VM"
	noteNoQuota    = "aufs has no quota support"
)

// capabilities declares aufs with the branch limit maxBranches as its
// maximum depth.
func capabilities(maxBranches int) drivers.Capabilities {
	return drivers.Capabilities{
		Strategy:    drivers.CopyOnWrite,
		Granularity: drivers.GranularityFile,
		QuotaNote:   noteNoQuota,
		Kernel:      []string{"aufs (out of tree)"},
		MaxDepth:    maxBranches,
		Notes: []string{
			noteUnverified,
			depthNote(maxBranches),
			"branches past one page of mount options are added with remount append:, as dockerd did",
		},
	}
}

// depthNote says what the branch limit means for chains.
func depthNote(maxBranches int) string {
	return fmt.Sprintf("one aufs mount unites at most %d branches (CONFIG_AUFS_BRANCH_MAX_%d; 127 is why Docker capped images at 125 layers): a view takes at most %d parents, an active snapshot, whose writable branch counts, %d; deeper Prepare and View are refused before anything is mounted", maxBranches, maxBranches, maxBranches, maxBranches-1)
}

// Factory returns the registry entry for aufs, declaring the running
// kernel's branch limit (DefaultMaxBranches where it cannot be read).
func Factory() drivers.Factory {
	return drivers.Factory{
		Name:         Name,
		Summary:      "aufs (out-of-tree union filesystem): the writable branch on top of every ancestor as read-only branches (dockerd's original driver)",
		Capabilities: capabilities(maxBranches()),
		Probe:        Probe,
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(New(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := parseOptions(o); return err },
	}
}

type backend struct {
	dirs  core.Dirs
	links core.Links // home/l
	home  string
	feat  features // xino is filled in per snapshot
	max   int      // branches the running aufs unites in one mount
	caps  drivers.Capabilities
}

// parseOptions reads the one option, dio; Factory.CheckOptions and New
// share it.
func parseOptions(opts drivers.Options) (bool, error) {
	if err := opts.Check(Name, "dio"); err != nil {
		return false, err
	}
	v, ok := opts["dio"]
	if !ok {
		return false, nil
	}
	dio, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: option dio=%q: want true or false: %w", Name, v, drivers.ErrInvalidArgument)
	}
	return dio, nil
}

// New opens an aufs driver with its state under home. Options: dio=true
// adds aufs's dio mount option (direct I/O through to the branches).
func New(ctx context.Context, home string, opts drivers.Options) (*core.Driver, error) {
	dio, err := parseOptions(opts)
	if err != nil {
		return nil, err
	}
	b := &backend{home: home}
	b.feat.dio = dio
	if err := core.CheckHome(Name, home); err != nil {
		return nil, err
	}
	if err := Probe(home).Err(Name); err != nil {
		return nil, err
	}
	if b.dirs, err = core.NewDirs(home); err != nil {
		return nil, wrap(err)
	}
	if b.links, err = core.NewLinks(home); err != nil {
		return nil, wrap(err)
	}
	b.feat.dirperm1 = supportsDirperm1(home)
	b.max = maxBranches()
	if b.caps, err = capabilitiesAt(home, b.max, b.feat); err != nil {
		return nil, wrap(err)
	}
	return core.Open(ctx, Name, home, b)
}

// capabilitiesAt is what the driver does with its home: aufs copies up by
// cloning extents when both branches are on one filesystem that can
// (au_clone_or_copy: vfs_clone_file_range, then a plain copy), so on a
// reflink filesystem a first write costs metadata, not the file's data.
func capabilitiesAt(home string, maxBranches int, f features) (drivers.Capabilities, error) {
	c := capabilities(maxBranches)
	reflink, err := core.Reflinks(home)
	if err != nil {
		return c, err
	}
	if reflink {
		c.Granularity = drivers.GranularityBlock
		c.Notes = append(c.Notes, "copy-up clones extents on "+core.FSType(home)+" (reflink): a first write copies the file's metadata, not its data")
	}
	c.Notes = append(c.Notes, fmt.Sprintf("dirperm1 %s; one xino file per snapshot under %s", onOff(f.dirperm1), xinoDir))
	if f.dio {
		c.Notes = append(c.Notes, "mounted with dio")
	}
	return c, nil
}

// xinoPath is the external inode number file for mounts of snapshot id (or
// another tag) of the driver at home. aufs creates the file with O_EXCL and
// unlinks it at once, one file per mount;
// before aufs 2019-05-23 ("protect creating XINO from concurrent mounts")
// two mounts naming the same path at the same moment could fail, which is
// why dockerd serialised its mounts. A path per home and snapshot keeps
// concurrent mounts of different snapshots apart without a lock.
func xinoPath(home, tag string) string {
	h := fnv.New32a()
	h.Write([]byte(home))
	return fmt.Sprintf("%s/aufs.%08x.%s.xino", xinoDir, h.Sum32(), tag)
}

// checkDepth refuses a snapshot whose mount would unite more branches than
// the running aufs can. Create calls it too, so a refused Prepare or View
// leaves no record behind.
func (b *backend) checkDepth(s storage.Snapshot) error {
	n := len(s.ParentIDs)
	if s.Kind == drivers.KindActive {
		n++ // the writable branch
	}
	if n > b.max {
		return fmt.Errorf("%s: %s snapshot %q on %d parents needs %d branches, but the running aufs unites at most %d (CONFIG_AUFS_BRANCH_MAX_%d; the limit that capped Docker images at 125 layers): %w; squash the chain into fewer layers, or use a kernel built with a larger CONFIG_AUFS_BRANCH_MAX_*", Name, s.Kind, s.ID, len(s.ParentIDs), n, b.max, b.max, drivers.ErrFailedPrecondition)
	}
	return nil
}

func (b *backend) Create(ctx context.Context, s storage.Snapshot) error {
	if err := b.checkDepth(s); err != nil {
		return err
	}
	if err := b.dirs.Mkdir(s.ID, "fs"); err != nil {
		b.dirs.Remove(s.ID)
		return err
	}
	// Views never become branches of another mount; only active snapshots
	// need a link.
	if s.Kind == drivers.KindActive {
		if err := b.links.Make(s.ID); err != nil {
			b.Remove(ctx, s.ID)
			return err
		}
	}
	return nil
}

func (b *backend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	if ms, ok := b.dirs.UnionShortcut(s); ok {
		return ms, nil
	}
	// Checked again here: the kernel may have changed since Create.
	if err := b.checkDepth(s); err != nil {
		return nil, err
	}
	rw := ""
	if s.Kind == drivers.KindActive {
		rw = b.links.Path(s.ID)
	}
	ro := make([]string, len(s.ParentIDs))
	for i, id := range s.ParentIDs {
		ro[i] = b.links.Path(id)
	}
	f := b.feat
	f.xino = xinoPath(b.home, s.ID)
	return branchMounts(rw, ro, os.Getpagesize(), f)
}

// Commit moves nothing: the writable branch is used as a read-only branch
// from now on.
func (b *backend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return b.Usage(ctx, s)
}

func (b *backend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	return core.DiskUsage(ctx, b.dirs.Path(s.ID, "fs"))
}

// Remove deletes the link first, so no later mount names a branch that is
// half gone.
func (b *backend) Remove(ctx context.Context, id string) error {
	if err := b.links.Remove(id); err != nil {
		return err
	}
	return b.dirs.Remove(id)
}

// Paths includes the short link: aufs's br: options name branches by it.
func (b *backend) Paths(id string) []string { return append(b.dirs.Paths(id), b.links.Path(id)) }

func (b *backend) IDs(ctx context.Context) ([]string, error) { return b.dirs.IDs(ctx) }

func (b *backend) Capabilities() drivers.Capabilities { return b.caps }

func (b *backend) Close() error { return nil }

func wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", Name, err)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
