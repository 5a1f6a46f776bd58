package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/core"
	"github.com/layerlab/layerlab/drivers/kernel"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// options are the driver options of overlay (volatile) and overlay2
// (size, volatile).
type options struct {
	size     int64 // overlay2: default limit of active snapshots, 0 for none
	volatile bool
}

// parseOptions reads the options of driver name without touching the
// machine; Factory.CheckOptions and the constructors share it.
func parseOptions(name string, opts drivers.Options) (options, error) {
	allowed := []string{"volatile"}
	if name == NameOverlay2 {
		allowed = append(allowed, "size")
	}
	if err := opts.Check(name, allowed...); err != nil {
		return options{}, err
	}
	var o options
	if v, ok := opts["volatile"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return options{}, fmt.Errorf("%s: option volatile=%q: want true or false: %w", name, v, drivers.ErrInvalidArgument)
		}
		o.volatile = b
	}
	if v, ok := opts["size"]; ok {
		n, err := drivers.ParseSize("size", v)
		if err != nil {
			return options{}, fmt.Errorf("%s: %w", name, err)
		}
		o.size = n
	}
	return o, nil
}

// volatileNote is the crash-safety caveat `driver info` shows.
const volatileNote = "option volatile=true mounts active snapshots with overlayfs's volatile option (Linux 5.10): no sync reaches the upper filesystem (a container's fsync and syncfs, and the fsync after each copy-up, are skipped), so a crash or power loss can lose or tear what a container wrote; Commit syncs the filesystem first, so committed layers are durable, and after a restart an active snapshot last mounted volatile is refused (remove it)"

// Overlayfs leaves work/incompat/volatile in the workdir of a volatile
// mount and refuses to mount that workdir again while it is there, even
// after a clean unmount: only the user can tell whether the upper is
// intact. The driver can: while the machine has not restarted since the
// snapshot's last volatile mount was handed out, everything written is in
// the page cache or on disk, so the marker goes; after a restart it may
// not be, so the snapshot is refused. bootFile keeps the boot id of the
// last volatile mount handed out.
const bootFile = "volatile-boot"

// readyVolatile makes the workdir of active snapshot id mountable with
// volatile again, or refuses when the machine restarted since.
func readyVolatile(name string, dirs core.Dirs, id string) error {
	marker := filepath.Join(dirs.Path(id, "work"), "work", "incompat", "volatile")
	boot := kernel.BootID()
	last, err := os.ReadFile(dirs.Path(id, bootFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	same := boot != "" && strings.TrimSpace(string(last)) == boot
	if _, err := os.Lstat(marker); err == nil {
		if !same {
			return fmt.Errorf("%s: snapshot %s was mounted volatile before the machine restarted (or its boot record is lost): what it wrote may be lost or torn: %w: remove it", name, id, drivers.ErrFailedPrecondition)
		}
		// The kernel puts a dirty directory inside it.
		if err := os.RemoveAll(marker); err != nil {
			return fmt.Errorf("%s: clear the volatile marker of snapshot %s: %w", name, id, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if same {
		return nil
	}
	return os.WriteFile(dirs.Path(id, bootFile), []byte(boot+"\n"), 0o600)
}

// syncVolatile makes what a volatile mount of s wrote durable before s
// becomes a parent: a committed layer must survive a crash.
func syncVolatile(volatile bool, dirs core.Dirs, s storage.Snapshot) error {
	if !volatile {
		return nil
	}
	return mount.SyncFS(dirs.Path(s.ID, "fs"))
}
