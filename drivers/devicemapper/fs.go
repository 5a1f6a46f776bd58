package devicemapper

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/mount"
)

// mkfsArgs is the command that formats a device. Discard is off: the
// device is fresh, and discarding 10 GiB of thin device is slow for
// nothing.
//
// ext4 is made with lazy inode tables and, on a pool that zeroes new
// blocks, a lazy journal: measured in the test guest (TCG) on a 10 GiB
// thin device, that maps 5 MiB in 0.7 s, against 69 MiB in 2.2 s with the
// journal zeroed and 229 MiB in 7 s with the inode tables zeroed too
// (dockerd's and containerd's choice; mkfs.xfs maps 65 MiB in 2.5 s).
// Uninitialised inode tables are safe on any device, ext4 reads none
// past a group's used inodes, and mounting with noinit_itable keeps
// ext4's lazyinit thread from zeroing (and so mapping) 160 MiB of them in
// every snapshot. A journal is safe unzeroed only where unwritten blocks
// read as zeroes: on a pool with skip_block_zeroing (a user's, as dockerd
// set them up) a crash could replay stale blocks, so there it is zeroed,
// once, on the base device.
func mkfsArgs(fstype, dev string, zeroes bool) []string {
	if fstype == "xfs" {
		return []string{"mkfs.xfs", "-q", "-f", "-K", dev}
	}
	lazyJournal := "0"
	if zeroes {
		lazyJournal = "1"
	}
	return []string{"mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=" + lazyJournal, dev}
}

func mkfs(ctx context.Context, fstype, dev string, zeroes bool) error {
	args := mkfsArgs(fstype, dev, zeroes)
	if _, err := command.Run(ctx, args[0], args[1:]...); err != nil {
		return fmt.Errorf("make %s on %s: %w", fstype, dev, err)
	}
	return nil
}

// mountOptions are the options of every mount of a thin device's
// filesystem: xfs refuses a second filesystem with a UUID it has mounted
// already, and all snapshots of one base share its UUID.
func mountOptions(fstype string, ro bool) []string {
	var o []string
	if ro {
		o = append(o, "ro")
	}
	if fstype == "xfs" {
		return append(o, "nouuid")
	}
	return append(o, "noinit_itable")
}

// withMount mounts dev on a new directory under dir for fn.
func withMount(dev, fstype, dir string, fn func(root string) error) (err error) {
	root, err := os.MkdirTemp(dir, "mnt-")
	if err != nil {
		return err
	}
	defer os.Remove(root)
	if err := mount.Filesystem(dev, root, fstype, mountOptions(fstype, false)...); err != nil {
		return err
	}
	defer func() {
		if uerr := mount.Unmount(root); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	return fn(root)
}

// prepareRoot makes a fresh filesystem's root what a container image
// expects: empty (mkfs.ext4 makes lost+found, which e2fsck remakes when it
// needs it) and mode 0755.
func prepareRoot(root string) error {
	if err := os.Remove(filepath.Join(root, "lost+found")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Chmod(root, 0o755)
}

// grow resizes the filesystem on dev to the device's new size, online.
func grow(ctx context.Context, dev, fstype, dir string) error {
	return withMount(dev, fstype, dir, func(root string) error {
		var err error
		if fstype == "xfs" {
			_, err = command.Run(ctx, "xfs_growfs", root)
		} else {
			_, err = command.Run(ctx, "resize2fs", dev)
		}
		if err != nil {
			return fmt.Errorf("grow the %s on %s: %w", fstype, dev, err)
		}
		return nil
	})
}

// mountpoint returns where the device major:minor is mounted, "" if
// nowhere.
func mountpoint(major, minor uint32) string {
	mounts, err := mountinfo.GetMounts(func(m *mountinfo.Info) (bool, bool) {
		return m.Major != int(major) || m.Minor != int(minor), false
	})
	if err != nil || len(mounts) == 0 {
		return ""
	}
	return mounts[0].Mountpoint
}

// usedInodes counts the inodes in use on the filesystem on dev: statfs
// of its mount when it is mounted at mp, else its superblock, which ext4
// and xfs bring up to date at unmount.
func usedInodes(dev, mp string) (int64, error) {
	if mp != "" {
		var st unix.Statfs_t
		if err := unix.Statfs(mp, &st); err != nil {
			return 0, err
		}
		return int64(st.Files - st.Ffree), nil
	}
	sb, err := readSuperblock(dev)
	if err != nil {
		return 0, err
	}
	return superblockInodes(sb)
}

// readSuperblock reads the first 4 KiB of dev with O_DIRECT: xfs writes
// its superblock past the block device's page cache, which may hold an
// older copy.
func readSuperblock(dev string) ([]byte, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(page)
	if _, err := f.ReadAt(page, 0); err != nil {
		return nil, fmt.Errorf("read the superblock of %s: %w", dev, err)
	}
	return append([]byte(nil), page...), nil
}

// superblockInodes reads the inodes in use from an ext4 or xfs superblock
// (the first 4 KiB of the device).
func superblockInodes(b []byte) (int64, error) {
	if len(b) < 4096 {
		return 0, fmt.Errorf("superblock: %d bytes, want 4096", len(b))
	}
	switch {
	case string(b[0:4]) == "XFSB":
		// struct xfs_dsb: sb_icount at 128, sb_ifree at 136, big endian.
		icount, ifree := binary.BigEndian.Uint64(b[128:]), binary.BigEndian.Uint64(b[136:])
		return int64(icount) - int64(ifree), nil
	case binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53:
		// struct ext4_super_block at 1024: s_inodes_count at 0,
		// s_free_inodes_count at 16, little endian.
		count, free := binary.LittleEndian.Uint32(b[1024:]), binary.LittleEndian.Uint32(b[1024+16:])
		return int64(count) - int64(free), nil
	}
	return 0, errors.New("superblock: neither ext4 nor xfs")
}

// needsRecovery reports whether an ext4 superblock says its journal holds
// transactions to replay (EXT4_FEATURE_INCOMPAT_RECOVER in
// s_feature_incompat, at 96).
func needsRecovery(b []byte) bool {
	return len(b) >= 2048 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xEF53 &&
		binary.LittleEndian.Uint32(b[1024+96:])&0x4 != 0
}
