package executor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	// The cgroup manager sets up device rules only with this package
	// linked in; without it a spec with devices fails to create.
	"github.com/moby/sys/mountinfo"
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
)

// DefaultCgroupParent is the cgroup every container's own cgroup is made
// under when the spec names none: /layerlab/<id> in each v1 controller.
const DefaultCgroupParent = "/layerlab"

// Libcontainer is the in-process Executor.
type Libcontainer struct {
	root         string
	cgroupParent string
	noPivot      bool // see rootIsInitramfs
}

// NewLibcontainer returns an executor that keeps container state under
// root (e.g. /run/layerlab/libcontainer; a tmpfs, so a reboot forgets it)
// and puts containers whose spec has no cgroups path under cgroupParent
// ("" for DefaultCgroupParent).
func NewLibcontainer(root, cgroupParent string) (*Libcontainer, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("libcontainer root %q: want an absolute path: %w", root, drivers.ErrInvalidArgument)
	}
	if cgroupParent == "" {
		cgroupParent = DefaultCgroupParent
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("libcontainer root: %w", err)
	}
	return &Libcontainer{root: root, cgroupParent: cgroupParent, noPivot: rootIsInitramfs()}, nil
}

// Close implements Executor: it removes the parent cgroup from every
// cgroup hierarchy where it is empty (libcontainer makes it, and removes
// only each container's own), so a stopped daemon leaves the cgroup trees
// as it found them.
func (e *Libcontainer) Close() error { return removeParentCgroups(e.cgroupParent) }

// rootIsInitramfs reports whether this process's root is the kernel's
// initial rootfs (a system run from its initramfs, as the qemu test
// guest): pivot_root(2) cannot move away from it (EINVAL), so containers
// enter their root with a move mount and chroot instead, as dockerd does
// with DOCKER_RAMDISK.
func rootIsInitramfs() bool {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (skip, stop bool) { return m.Mountpoint != "/", false })
	return err == nil && len(mounts) > 0 && mounts[len(mounts)-1].FSType == "rootfs"
}

// removeParentCgroups removes the cgroup parent from every hierarchy
// where it is empty.
func removeParentCgroups(parent string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return fmt.Errorf("close executor: %w", err)
	}
	var errs []error
	for _, m := range mounts {
		err := os.Remove(filepath.Join(m.Mountpoint, parent))
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("close executor: remove cgroup %s: %w", filepath.Join(m.Mountpoint, parent), err))
		}
	}
	return errors.Join(errs...)
}

// Create implements Executor.
func (e *Libcontainer) Create(ctx context.Context, id string, spec *specs.Spec, stdio Stdio) (_ Container, err error) {
	if err := checkCreate(ctx, id, spec); err != nil {
		return nil, err
	}
	initProc, err := newProcess("container "+id, spec.Process, stdio, true)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			initProc.discard()
		}
	}()
	s := withCgroup(spec, e.cgroupParent, id)
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: s, NoNewKeyring: true, NoPivotRoot: e.noPivot})
	if err != nil {
		return nil, fmt.Errorf("container %s: spec: %w: %w", id, err, drivers.ErrInvalidArgument)
	}
	lc, err := libcontainer.Create(e.root, id, cfg)
	if errors.Is(err, libcontainer.ErrExist) {
		return nil, fmt.Errorf("container %s: %w", id, drivers.ErrAlreadyExists)
	}
	if err != nil {
		return nil, fmt.Errorf("container %s: create: %w", id, err)
	}
	defer func() {
		if err != nil {
			_ = lc.Destroy()
		}
	}()
	c := &container{id: id, lc: lc, process: initProc}
	if err := initProc.start(lc.Start, c.oomKilled); err != nil {
		return nil, err
	}
	return c, nil
}

// List implements Executor.
func (e *Libcontainer) List(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(e.root)
	if err != nil {
		return nil, fmt.Errorf("libcontainer root: %w", err)
	}
	var ids []string
	for _, d := range entries {
		if d.IsDir() {
			ids = append(ids, d.Name())
		}
	}
	return ids, nil
}

// Purge implements Executor.
func (e *Libcontainer) Purge(ctx context.Context, id string) error {
	if err := validID(id); err != nil {
		return err
	}
	lc, err := libcontainer.Load(e.root, id)
	if errors.Is(err, libcontainer.ErrNotExist) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("container %s: load: %w", id, err)
	}
	// With its own pid namespace, SIGKILL to init kills every process in
	// it; the kernel (or whoever is its parent) reaps the init.
	if err := lc.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("container %s: kill: %w", id, err)
	}
	if err := waitStopped(ctx, lc); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if err := lc.Destroy(); err != nil {
		return fmt.Errorf("container %s: destroy: %w", id, err)
	}
	return nil
}

// checkCreate is what both executors check before creating id from spec.
func checkCreate(ctx context.Context, id string, spec *specs.Spec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validID(id); err != nil {
		return err
	}
	if spec == nil || spec.Process == nil || spec.Root == nil || spec.Linux == nil {
		return fmt.Errorf("container %s: the spec needs process, root and linux sections: %w", id, drivers.ErrInvalidArgument)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		return fmt.Errorf("container %s: root %q: want an absolute path: %w", id, spec.Root.Path, drivers.ErrInvalidArgument)
	}
	return nil
}

// withCgroup returns a copy of spec whose cgroups path is parent/id when
// it names none: filling it in must not change the caller's spec.
func withCgroup(spec *specs.Spec, parent, id string) *specs.Spec {
	s := *spec
	linux := *spec.Linux
	s.Linux = &linux
	if s.Linux.CgroupsPath == "" {
		s.Linux.CgroupsPath = path.Join(parent, id)
	}
	return &s
}

// validID checks id as libcontainer will, and before the id becomes part of
// a cgroup path: letters, digits and _+-. only, and not . or ..
func validID(id string) error {
	ok := id != "" && id != "." && id != ".."
	for _, r := range id {
		ok = ok && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-.", r))
	}
	if !ok {
		return fmt.Errorf("container id %q: want letters, digits, _, +, - and . only: %w", id, drivers.ErrInvalidArgument)
	}
	return nil
}

// waitStopped polls until lc's init has gone: a process that is not our
// child cannot be waited for.
func waitStopped(ctx context.Context, lc *libcontainer.Container) error {
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		st, err := lc.Status()
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if st == libcontainer.Stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the init to die: %w", ctx.Err())
		case <-time.After(delay):
		}
	}
}
