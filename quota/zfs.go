package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
)

// ZFS limits datasets with zfs's quota property. Target.Path is the
// dataset name (pool/dir/id), not a directory.
//
// It sets quota, not refquota: quota bounds the dataset's used, which for
// a clone counts only the blocks the clone wrote (plus its snapshots),
// while refquota bounds referenced, which also counts every block the
// clone shares with its origin, so a 10 MiB refquota on a clone of a
// 50 MiB layer would refuse the first write. A snapshot's limit is on what
// it adds, as with the other mechanisms.
type ZFS struct{}

// syncProperty is the user property Get inherits to force a sync; it is
// never set.
const syncProperty = "layerlab:sync"

// Mechanism implements Controller.
func (ZFS) Mechanism() string { return "zfs quota" }

// Set implements Controller.
func (ZFS) Set(ctx context.Context, t Target, limit int64) error {
	if limit <= 0 {
		return fmt.Errorf("zfs quota on %s: limit %d: %w: want a positive byte count (Clear removes a limit)", t.Path, limit, drivers.ErrInvalidArgument)
	}
	if _, err := command.Run(ctx, "zfs", "set", "quota="+strconv.FormatInt(limit, 10), t.Path); err != nil {
		return zfsQuotaErr("set zfs quota on", t.Path, err)
	}
	return nil
}

// Get implements Controller; a limit of 0 means none is set.
//
// zfs counts used when a transaction group reaches disk (every 5 s on
// OpenZFS, 30 s on zfs-fuse; fsync only writes the intent log), so Get
// first forces one: it inherits an unset user property, a change that
// changes nothing but, like every property change, waits for the sync.
// zfs-fuse has no `zpool sync` to do it more plainly.
func (ZFS) Get(ctx context.Context, t Target) (Quota, error) {
	if _, err := command.Run(ctx, "zfs", "inherit", syncProperty, t.Path); err != nil {
		return Quota{}, zfsQuotaErr("sync the pool of", t.Path, err)
	}
	// One call for both, in the order asked for; -p gives exact bytes
	// (zfs-fuse takes -p on get, though not on list).
	out, err := command.Run(ctx, "zfs", "get", "-Hp", "-o", "value", "quota,used", t.Path)
	if err != nil {
		return Quota{}, zfsQuotaErr("read zfs quota of", t.Path, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return Quota{}, fmt.Errorf("zfs quota of %s: unexpected output %q from zfs get", t.Path, out)
	}
	var q Quota
	for i, dst := range []*int64{&q.Limit, &q.Used} {
		if *dst, err = parseZFSBytes(f[i]); err != nil {
			return Quota{}, fmt.Errorf("zfs quota of %s: %w", t.Path, err)
		}
	}
	return q, nil
}

// Clear implements Controller.
func (ZFS) Clear(ctx context.Context, t Target) error {
	if _, err := command.Run(ctx, "zfs", "set", "quota=none", t.Path); err != nil {
		return zfsQuotaErr("clear zfs quota on", t.Path, err)
	}
	return nil
}

// parseZFSBytes reads a -p value; "none" and "-" mean no limit.
func parseZFSBytes(v string) (int64, error) {
	if v == "none" || v == "-" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("zfs printed %q where it should print a byte count", v)
	}
	return n, nil
}

func zfsQuotaErr(what, dataset string, err error) error {
	var ce *command.Error
	switch {
	case errors.Is(err, command.ErrMissing):
		return fmt.Errorf("%s %s: %w: %w (install zfs-fuse or OpenZFS)", what, dataset, ErrUnsupported, err)
	case errors.As(err, &ce) && strings.Contains(ce.Stderr, "does not exist"):
		return fmt.Errorf("%s %s: %w: name a zfs dataset, not a directory: %w", what, dataset, drivers.ErrNotFound, err)
	}
	return fmt.Errorf("%s %s: %w", what, dataset, err)
}
