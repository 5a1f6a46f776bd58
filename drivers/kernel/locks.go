package kernel

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockHolder is a process that holds a flock(2) lock.
type LockHolder struct {
	PID  int
	Comm string // its command name, "" when it cannot be read
}

func (h LockHolder) String() string {
	if h.Comm == "" {
		return fmt.Sprintf("pid %d", h.PID)
	}
	return fmt.Sprintf("pid %d (%s)", h.PID, h.Comm)
}

// FlockHolder finds the process holding a flock(2) lock on the file at
// path, from /proc/locks, which lists each lock with the pid that took it
// and the device and inode of its file. ok is false when no flock on the
// file is listed or /proc/locks cannot be read. A holder in another pid
// namespace is listed with the pid it has in ours, or 0 if it has none
// there; then ok is false too. bbolt locks its database file this way.
func FlockHolder(path string) (holder LockHolder, ok bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return LockHolder{}, false
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return LockHolder{}, false
	}
	defer f.Close()
	return flockHolder(bufio.NewScanner(f), uint64(st.Dev), st.Ino)
}

// flockHolder reads /proc/locks lines ("1: FLOCK  ADVISORY  WRITE 4242
// 08:01:1234 0 EOF": the device's major and minor in hex, then the inode)
// for a FLOCK on inode ino of device dev. Waiters ("1: -> FLOCK ...") hold
// nothing and are passed over. btrfs reports a subvolume's own anonymous
// device to stat(2) but the filesystem's to /proc/locks, so when no entry
// matches both, a single FLOCK entry on the inode is taken.
func flockHolder(s *bufio.Scanner, dev, ino uint64) (LockHolder, bool) {
	var exact, byInode []int
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		pid, err := strconv.Atoi(f[4])
		if err != nil || pid <= 0 {
			continue
		}
		parts := strings.Split(f[5], ":")
		if len(parts) != 3 {
			continue
		}
		maj, err1 := strconv.ParseUint(parts[0], 16, 32)
		min, err2 := strconv.ParseUint(parts[1], 16, 32)
		n, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || n != ino {
			continue
		}
		if unix.Mkdev(uint32(maj), uint32(min)) == dev {
			exact = append(exact, pid)
		}
		byInode = append(byInode, pid)
	}
	var pid int
	switch {
	case len(exact) > 0:
		pid = exact[0]
	case len(byInode) == 1:
		pid = byInode[0]
	default:
		return LockHolder{}, false
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return LockHolder{PID: pid, Comm: strings.TrimSpace(string(comm))}, true
}
