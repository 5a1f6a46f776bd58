package zfs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/loopfs"
	"github.com/layerlab/layerlab/drivers/mount"
)

// fuseDataset makes a dataset mounted at a new directory of the pool z,
// with a file written and appended to as the harness's copy-up does.
func fuseDataset(t *testing.T, z *loopfs.ZFS, name string) (string, string) {
	t.Helper()
	ds, dir := z.Pool+"/"+name, filepath.Join(z.Dir, name)
	if _, err := command.Run(context.Background(), "zfs", "create", "-o", "mountpoint="+dir, ds); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "file"), mib)
	f, err := os.OpenFile(filepath.Join(dir, "file"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte{1})
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	return ds, dir
}

// fusePool makes a pool for a test of the zfs-fuse release wait, which
// kernel ZFS has no use for: its unmount is synchronous.
func fusePool(t *testing.T) *loopfs.ZFS {
	t.Helper()
	z := loopfs.ForTestZFS(t, 0)
	if z != nil && !z.Fuse {
		t.Skip("kernel ZFS: its unmount is synchronous, there is no daemon to wait for")
	}
	return z
}

// fuseConnection makes a dataset as fuseDataset does and returns the
// FUSE connection the daemon serves it on; the caller closes it.
func fuseConnection(t *testing.T, z *loopfs.ZFS, name string) (string, string, fuseConn) {
	t.Helper()
	ds, dir := fuseDataset(t, z, name)
	c, ok, err := connOf(dir, ds)
	if err != nil || !ok {
		t.Fatalf("connection of %s at %s: ok %v, %v", ds, dir, ok, err)
	}
	return ds, dir, c
}

// TestReleaseThenOneDestroy checks that the daemon closing its descriptor
// for a dataset's FUSE connection is the event after which the dataset
// can be destroyed: `zfs umount` returns before it (then a destroy fails
// "dataset is busy"), and once released returns one destroy succeeds,
// every time.
func TestReleaseThenOneDestroy(t *testing.T) {
	z := fusePool(t)
	ctx := context.Background()
	waited := 0
	for i := 0; i < 10; i++ {
		ds, _, c := fuseConnection(t, z, "d"+strconv.Itoa(i))
		if _, err := command.Run(ctx, "zfs", "umount", ds); err != nil {
			t.Fatal(err)
		}
		for _, f := range c.files {
			if f.dup < 0 {
				t.Errorf("no duplicate of the daemon's descriptor %d: pidfd_getfd refused", f.fd)
			}
			if c.open(f) {
				waited++ // the daemon still held it when umount returned
				break
			}
		}
		err := c.released(ctx)
		c.close()
		if err != nil {
			t.Fatal(err)
		}
		if err := destroy(ds); err != nil {
			t.Fatalf("cycle %d: destroy right after the daemon let go: %v", i, err)
		}
	}
	t.Logf("the daemon still held the dataset when zfs umount returned in %d of 10 cycles", waited)
	if _, ok, err := connOf(filepath.Join(z.Dir, "d0"), z.Pool+"/d0"); ok || err != nil {
		t.Errorf("connection of a destroyed dataset: ok %v, %v; want none", ok, err)
	}
}

// TestReleaseNotFooledByReuse unmounts a dataset and at once mounts
// another, which often takes the freed device minor and, once the daemon
// has closed the first one's descriptor, its number too: released must
// wait for the first dataset's own descriptor, so that one destroy then
// succeeds every time.
func TestReleaseNotFooledByReuse(t *testing.T) {
	z := fusePool(t)
	ctx := context.Background()
	reused := 0
	for i := 0; i < 10; i++ {
		ds, _, c := fuseConnection(t, z, "a"+strconv.Itoa(i))
		if _, err := command.Run(ctx, "zfs", "umount", ds); err != nil {
			c.close()
			t.Fatal(err)
		}
		next := filepath.Join(z.Dir, "b"+strconv.Itoa(i))
		if _, err := command.Run(ctx, "zfs", "create", "-o", "mountpoint="+next, z.Pool+"/b"+strconv.Itoa(i)); err != nil {
			c.close()
			t.Fatal(err)
		}
		if m, err := mount.Lookup(next); err == nil && uint32(m.Minor) == c.id {
			reused++
		}
		err := c.released(ctx)
		c.close()
		if err != nil {
			t.Fatal(err)
		}
		if err := destroy(ds); err != nil {
			t.Fatalf("cycle %d: destroy once the daemon let go: %v", i, err)
		}
	}
	t.Logf("the next dataset took the freed device minor in %d of 10 cycles", reused)
}

// TestReleaseNamesWhatHoldsTheDataset keeps the filesystem of a dataset
// alive after `zfs umount`, by a second bind mount and by a file open
// through a bind mount that was detached lazily: released must not
// return meanwhile, and holders must name both. Then the file is closed
// and, before the last mount goes, its release is made to reach the daemon
// (a statfs answered behind it, as unmount does): the daemon lets go and
// the dataset can be destroyed. Closing the file as the filesystem's last
// user instead can lose its release and wedge the daemon (see fuse.go).
func TestReleaseNamesWhatHoldsTheDataset(t *testing.T) {
	z := fusePool(t)
	ctx := context.Background()
	ds, dir, c := fuseConnection(t, z, "held")
	defer c.close()
	detached, kept := t.TempDir(), t.TempDir()
	for _, b := range []string{detached, kept} {
		if err := unix.Mount(dir, b, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}
	defer unix.Unmount(kept, 0)
	f, err := os.Open(filepath.Join(detached, "file"))
	if err != nil {
		unix.Unmount(detached, 0)
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Unmount(detached, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := command.Run(ctx, "zfs", "umount", ds); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := c.released(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("released while the filesystem is in use: %v, want to keep waiting", err)
	}
	h := holders(c.id)
	if !strings.Contains(h, "pid "+strconv.Itoa(os.Getpid())+" has ") || !strings.Contains(h, "mounted at "+kept) {
		t.Errorf("holders: %q, want this process's open file and the mount at %s", h, kept)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(kept, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(kept, 0); err != nil {
		t.Fatal(err)
	}
	if err := c.released(ctx); err != nil {
		t.Fatal(err)
	}
	if err := destroy(ds); err != nil {
		t.Fatalf("destroy once nothing uses it: %v", err)
	}
}
