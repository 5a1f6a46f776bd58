// Package zfs is the redirect-on-write driver on ZFS datasets, with kernel
// OpenZFS or with zfs-fuse (fuse.go keeps every difference).
//
// The home must be the mountpoint of a dataset, or a directory inside
// one. Each snapshot is a child dataset PARENT/<id>: a base snapshot a new
// dataset, a child of a committed snapshot a clone of PARENT/<pid>@snap
// (read-only for views, but see viewProps). Commit makes the dataset read-only and takes
// PARENT/<id>@snap. Each dataset is mounted by zfs at home/snapshots/<id>
// and handed out as a bind mount of that directory.
//
// PARENT is the home's dataset when the home is its mountpoint. When the
// home is a directory inside a dataset, PARENT is a child dataset of it
// named after the home (mountpoint=none): several homes may share one
// dataset, as drivertest's do, and each home's ids start at 1.
package zfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	gozfs "github.com/mistifyio/go-zfs/v3"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
	"github.com/layerlab/layerlab/quota"
)

// Name is the registry name of the driver.
const Name = "zfs"

// snap is the name of the one zfs snapshot a committed dataset has.
const snap = "snap"

// Factory returns the registry entry for zfs.
func Factory() drivers.Factory {
	return drivers.Factory{
		Name:         Name,
		Summary:      "a zfs dataset per snapshot, children cloned from their parent's zfs snapshot (kernel OpenZFS or zfs-fuse)",
		Capabilities: capabilities(""),
		Probe:        Probe,
		Open: func(ctx context.Context, home string, opts drivers.Options) (drivers.Driver, error) {
			return drivers.Opened(New(ctx, home, opts))
		},
		CheckOptions: func(o drivers.Options) error { _, err := drivers.SizeOnly(Name, o); return err },
	}
}

func capabilities(impl string) drivers.Capabilities {
	c := drivers.Capabilities{
		Strategy:    drivers.RedirectOnWrite,
		Granularity: drivers.GranularityBlock,
		Quota:       true,
		QuotaNote:   "zfs quota property",
		Kernel:      []string{"zfs (kernel OpenZFS or zfs-fuse)"},
	}
	if impl != "" {
		c.Notes = []string{"served by " + impl, "each snapshot's dataset is mounted by zfs under home/snapshots and handed out as a bind mount"}
	}
	return c
}

// Probe implements drivers.Factory.Probe.
func Probe(home string) drivers.Probe {
	ctx := context.Background()
	p := drivers.Probe{Facts: []drivers.Fact{{Name: "kernel", Value: kernel.Release()}, {Name: "zfs", Value: implementation()}}}
	if b, err := kernel.BackingOf(home); err == nil {
		p.Facts = append(p.Facts, drivers.Fact{Name: "backing filesystem", Value: b.Type + " (" + b.Source + ") at " + b.Path})
	}
	switch {
	case !command.Available("zfs"):
		p.Reason = "the zfs command is not installed; install zfs-fuse or OpenZFS (`make setup` installs zfs-fuse)"
	case !kernel.IsRoot():
		p.Reason = "zfs and bind-mounting snapshots need root; run as root"
	default:
		p.Reason = probeHome(ctx, home, &p)
	}
	return p
}

// probeHome returns why home cannot be used, adding what it finds to p.
func probeHome(ctx context.Context, home string, p *drivers.Probe) string {
	if err := core.CheckHome(Name, home); err != nil {
		p.Class = drivers.ErrInvalidArgument
		return err.Error()
	}
	if reason := daemonReason(ctx); reason != "" {
		return reason
	}
	b, err := kernel.BackingOf(home)
	if err != nil {
		return fmt.Sprintf("cannot examine the filesystem under %s: %v", home, err)
	}
	if !isZFSMount(b.Type) {
		return notZFS(home, b)
	}
	ds, _, err := homeDataset(home)
	if err != nil {
		return err.Error()
	}
	p.Facts = append(p.Facts, drivers.Fact{Name: "zfs dataset", Value: ds})
	return xattrReason(b.Path)
}

func notZFS(home string, b kernel.Backing) string {
	return fmt.Sprintf("home %s is on %s (%s at %s), not on a zfs dataset; put it at the mountpoint of a zfs dataset or in a directory inside one", home, b.Type, b.Source, b.Path)
}

// homeDataset finds the dataset holding home (or its nearest existing
// ancestor) and home's path inside it, "/" when home is its mountpoint.
func homeDataset(home string) (string, string, error) {
	b, err := kernel.BackingOf(home)
	if err != nil {
		return "", "", fmt.Errorf("%s: examine the filesystem under %s: %w", Name, home, err)
	}
	if !isZFSMount(b.Type) {
		return "", "", fmt.Errorf("%s: %w: %s", Name, drivers.ErrInvalidArgument, notZFS(home, b))
	}
	m, err := mount.Lookup(b.Path)
	if err != nil {
		return "", "", err
	}
	home = filepath.Clean(home)
	if resolved, err := filepath.EvalSymlinks(home); err == nil {
		home = resolved // as mountinfo has it
	}
	rel, err := filepath.Rel(m.Mountpoint, home)
	if err != nil {
		return "", "", err
	}
	return m.Source, filepath.Join(m.Root, rel), nil
}

// parentDataset is the dataset the snapshots of a home are children of.
func parentDataset(dataset, rel string) string {
	if rel == "/" {
		return dataset
	}
	// Readable and unique: the path, made a valid dataset name component
	// and cut short, then a hash of the whole path.
	var b strings.Builder
	for _, r := range strings.Trim(rel, "/") {
		switch {
		case r == '/':
			b.WriteByte('.')
		case r < 128 && (r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if len(name) > 48 {
		name = name[len(name)-48:]
	}
	sum := sha256.Sum256([]byte(rel))
	return dataset + "/ll-" + name + "-" + hex.EncodeToString(sum[:4])
}

type backend struct {
	parent string    // PARENT: one child dataset per snapshot
	dirs   core.Dirs // home/snapshots/<id>: where each is mounted
	size   int64     // default limit of active snapshots, 0 for none
	quota  quota.ZFS
	caps   drivers.Capabilities
}

// New opens a zfs driver with its state under home. Its one option, size,
// limits every active snapshot that asks for no limit of its own.
func New(ctx context.Context, home string, opts drivers.Options) (*Driver, error) {
	size, err := drivers.SizeOnly(Name, opts)
	if err != nil {
		return nil, err
	}
	if err := core.CheckHome(Name, home); err != nil {
		return nil, err
	}
	if !command.Available("zfs") {
		return nil, fmt.Errorf("%s: %w: the zfs command is not installed; install zfs-fuse or OpenZFS", Name, drivers.ErrUnavailable)
	}
	if reason := daemonReason(ctx); reason != "" {
		return nil, fmt.Errorf("%s: %w: %s", Name, drivers.ErrUnavailable, reason)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	dataset, rel, err := homeDataset(home)
	if err != nil {
		return nil, err
	}
	parent := parentDataset(dataset, rel)
	if parent != dataset {
		if err := ensureContainer(ctx, parent); err != nil {
			return nil, err
		}
	}
	dirs, err := core.NewDirs(home)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	b := &backend{parent: parent, dirs: dirs, size: size, caps: capabilities(implementation())}
	d, err := core.Open(ctx, Name, home, b)
	if err != nil {
		return nil, err
	}
	return &Driver{Driver: d, b: b}, nil
}

// Driver is core's snapshot bookkeeping over datasets, plus what the pool
// holds for them.
type Driver struct {
	*core.Driver
	b *backend
}

// BackingUsed implements drivers.SpaceReporter: the used bytes of the
// dataset holding every snapshot of this home, read after forcing a sync.
// statfs cannot stand in: on a zfs dataset it reports the dataset's
// referenced bytes, which for a clone include everything it shares with
// its origin.
func (d *Driver) BackingUsed(ctx context.Context) (int64, error) {
	q, err := d.b.quota.Get(ctx, quota.Target{Path: d.b.parent})
	return q.Used, err
}

// ensureContainer creates the per-home parent dataset. mountpoint=none:
// it holds no files, and its children set their own mountpoints.
func ensureContainer(ctx context.Context, name string) error {
	_, err := command.Run(ctx, "zfs", "create", "-o", "mountpoint=none", name)
	if err != nil && !strings.Contains(stderr(err), "already exists") {
		return fmt.Errorf("%s: create the home's dataset %s: %w", Name, name, err)
	}
	return nil
}

func (b *backend) dataset(id string) string { return b.parent + "/" + id }

func (b *backend) Create(ctx context.Context, s storage.Snapshot) error {
	var limit int64
	if s.Kind == drivers.KindActive {
		var err error
		if limit, err = drivers.SizeOf(s.Labels, b.size); err != nil {
			return err
		}
	}
	ds := b.dataset(s.ID)
	args := []string{"-o", "mountpoint=" + b.dirs.Path(s.ID)}
	if s.Kind == drivers.KindView {
		args = append(args, viewProps()...)
	}
	var err error
	if len(s.ParentIDs) == 0 {
		_, err = command.Run(ctx, "zfs", append(append([]string{"create"}, args...), ds)...)
	} else {
		origin := b.dataset(s.ParentIDs[0]) + "@" + snap
		_, err = command.Run(ctx, "zfs", append(append([]string{"clone"}, args...), origin, ds)...)
	}
	if err != nil {
		return err
	}
	if limit > 0 {
		if err := b.quota.Set(ctx, quota.Target{Path: ds}, limit); err != nil {
			return errors.Join(err, b.Remove(ctx, s.ID))
		}
	}
	return nil
}

// mounted makes sure the dataset of id is mounted at its directory: it is
// from creation on, but not after Close or a daemon restart.
func (b *backend) mounted(ctx context.Context, id string) (string, error) {
	dir := b.dirs.Path(id)
	if ok, err := mount.Mounted(dir); err == nil && ok {
		return dir, nil
	}
	_, err := command.Run(ctx, "zfs", "mount", b.dataset(id))
	if err != nil && !strings.Contains(stderr(err), "already mounted") {
		return "", fmt.Errorf("mount %s: %w", b.dataset(id), err)
	}
	return dir, nil
}

func (b *backend) Mounts(s storage.Snapshot) ([]drivers.Mount, error) {
	dir, err := b.mounted(context.Background(), s.ID)
	if err != nil {
		return nil, err
	}
	return core.Bind(dir, s.Kind == drivers.KindView), nil
}

func (b *backend) Commit(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	ds := &gozfs.Dataset{Name: b.dataset(s.ID)}
	// Read-only first, so nothing lands after the snapshot that its
	// children would not see.
	if err := ds.SetProperty("readonly", "on"); err != nil {
		return drivers.Usage{}, fmt.Errorf("make %s read-only: %w", ds.Name, err)
	}
	// A commit the next open finishes after a crash runs this again: the
	// snapshot may already exist, taken after readonly was set.
	if _, err := command.Run(ctx, "zfs", "snapshot", ds.Name+"@"+snap); err != nil && !strings.Contains(stderr(err), "already exists") {
		return drivers.Usage{}, err
	}
	core.Step(ctx, "zfs:snapshot")
	return b.Usage(ctx, s)
}

// UndoCommit implements core.CommitUndoer: a commit that cannot finish
// leaves an active snapshot, which must be writable and have no @snap.
func (b *backend) UndoCommit(ctx context.Context, s storage.Snapshot) error {
	ds := b.dataset(s.ID)
	if _, err := command.Run(ctx, "zfs", "destroy", ds+"@"+snap); err != nil && !strings.Contains(stderr(err), "could not find") && !strings.Contains(stderr(err), "does not exist") {
		return fmt.Errorf("take back the commit of %s: %w", ds, err)
	}
	if err := (&gozfs.Dataset{Name: ds}).SetProperty("readonly", "off"); err != nil {
		return fmt.Errorf("take back the commit of %s: make it writable: %w", ds, err)
	}
	return nil
}

// Usage is the dataset's used (for a clone, the blocks it does not share
// with its origin) and the inodes it adds: for a clone, those whose inode
// number its parent does not have (a clone keeps its origin's numbers;
// changing an inherited file adds no inode on zfs). Not the object count
// statfs gives: with xattrs on, zfs-fuse gives most files a hidden xattr
// directory, another object. Not ctimes either: zfs-fuse has whole
// seconds only.
func (b *backend) Usage(ctx context.Context, s storage.Snapshot) (drivers.Usage, error) {
	q, err := b.quota.Get(ctx, quota.Target{Path: b.dataset(s.ID)}) // syncs first
	if err != nil {
		return drivers.Usage{}, err
	}
	dir, err := b.mounted(ctx, s.ID)
	if err != nil {
		return drivers.Usage{}, err
	}
	inherited := make(map[uint64]bool)
	if len(s.ParentIDs) > 0 {
		pdir, err := b.mounted(ctx, s.ParentIDs[0])
		if err != nil {
			return drivers.Usage{}, err
		}
		if err := inodes(ctx, pdir, func(ino uint64) { inherited[ino] = true }); err != nil {
			return drivers.Usage{}, err
		}
	}
	var n int64
	err = inodes(ctx, dir, func(ino uint64) {
		if !inherited[ino] {
			inherited[ino] = true // hard links count once
			n++
		}
	})
	return drivers.Usage{Size: q.Used, Inodes: n}, err
}

// inodes calls fn with the inode number of everything under dir.
func inodes(ctx context.Context, dir string, fn func(uint64)) error {
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		fn(st.Ino)
		return nil
	})
	if err != nil {
		return fmt.Errorf("count inodes under %s: %w", dir, err)
	}
	return nil
}

func (b *backend) Remove(ctx context.Context, id string) error {
	ds := b.dataset(id)
	// Unmount apart from destroy, waiting until zfs-fuse has let go of the
	// dataset (see fuse.go).
	if err := unmount(ctx, b.dirs.Path(id), ds); err != nil {
		return err
	}
	if err := destroy(ds); err != nil {
		msg := stderr(err)
		switch {
		case strings.Contains(msg, "dependent clones"):
			// core removes children first, so these are clones no record
			// names; the next open sweeps them, children first.
			return fmt.Errorf("destroy %s: %w: its zfs snapshot still has clones (%s); remove those first or reopen the driver to sweep them: %w",
				ds, drivers.ErrFailedPrecondition, strings.Join(strings.Fields(msg), " "), err)
		case strings.Contains(msg, "busy"):
			return fmt.Errorf("destroy %s: %w: it is busy though unmounted; unmount whatever still uses %s (a bind mount, an open file) and remove again: %w",
				ds, drivers.ErrFailedPrecondition, b.dirs.Path(id), err)
		}
		return fmt.Errorf("destroy %s: %w", ds, err)
	}
	if err := os.Remove(b.dirs.Path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// IDs lists the child datasets of PARENT named like snapshot ids, newest
// first: a clone is always newer than its origin, so the sweep removes
// children before their parents, which zfs requires.
func (b *backend) IDs(ctx context.Context) ([]string, error) {
	out, err := command.Run(ctx, "zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", "-d", "1", b.parent)
	if err != nil {
		return nil, err
	}
	var ids []uint64
	for _, line := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(line, b.parent+"/")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(name, 10, 64); err == nil {
			ids = append(ids, n)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	s := make([]string, len(ids))
	for i, n := range ids {
		s[i] = strconv.FormatUint(n, 10)
	}
	return s, nil
}

// Paths is the directory the dataset is mounted at: binds of it show the
// dataset's filesystem, which InUse tells apart from the dataset's own
// mount there.
func (b *backend) Paths(id string) []string { return b.dirs.Paths(id) }

func (b *backend) Capabilities() drivers.Capabilities { return b.caps }

// Close unmounts the datasets it mounted, so that a closed driver leaves
// no mounts behind and its home can be deleted; the datasets stay, and
// the next open mounts each again when it is used.
func (b *backend) Close() error {
	points, err := mount.Under(b.dirs.Root)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var errs []error
	for _, p := range points {
		if filepath.Dir(p) != b.dirs.Root {
			continue
		}
		ds := b.dataset(filepath.Base(p))
		if err := unmount(ctx, p, ds); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", Name, err))
		}
	}
	return errors.Join(errs...)
}
