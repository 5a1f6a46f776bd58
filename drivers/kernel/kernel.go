// Package kernel answers the questions driver probes ask of this machine:
// which filesystems the running kernel has, what filesystem holds a path,
// whether we may mount.
package kernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// Release returns the kernel release, as uname -r prints it.
func Release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// HasFilesystem reports whether fstype is listed in /proc/filesystems.
func HasFilesystem(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

// IsRoot reports whether the process runs as root, which mounting needs.
func IsRoot() bool { return os.Geteuid() == 0 }

// Param reads a kernel module parameter, "" when it does not exist.
func Param(module, name string) string {
	b, err := os.ReadFile(filepath.Join("/sys/module", module, "parameters", name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Processes returns the pids of the running processes whose command name
// (/proc/PID/comm) is comm.
func Processes(comm string) ([]string, error) {
	files, err := filepath.Glob("/proc/[0-9]*/comm")
	if err != nil {
		return nil, err
	}
	var pids []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == comm {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids, nil
}

// Statfs magic numbers the probes look for.
const (
	MagicOverlay = 0x794c7630
	MagicBtrfs   = 0x9123683e
	MagicXFS     = 0x58465342
	MagicExt4    = 0xef53
	MagicTmpfs   = 0x01021994
)

// Backing describes the filesystem that holds (or would hold) a path.
type Backing struct {
	Path    string // the nearest existing ancestor actually examined
	Type    string // from mountinfo, e.g. ext4, xfs, fuse.zfs
	Source  string // device or pool
	Options string // mount and superblock options
	Magic   int64  // statfs f_type
}

// BackingOf examines path, or its nearest existing ancestor when path does
// not exist yet.
func BackingOf(path string) (Backing, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return Backing{}, err
	}
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		parent := filepath.Dir(path)
		if parent == path {
			return Backing{}, fmt.Errorf("no existing ancestor of %s: %w", path, drivers.ErrNotFound)
		}
		path = parent
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return Backing{}, fmt.Errorf("statfs %s: %w", path, err)
	}
	b := Backing{Path: path, Magic: int64(st.Type)}
	m, err := mount.Lookup(path)
	if err != nil {
		return b, err
	}
	b.Type, b.Source = m.FSType, m.Source
	b.Options = strings.Trim(m.Options+","+m.VFSOptions, ",")
	return b, nil
}

// BootID returns the kernel's random id of this boot, which changes at
// every restart (a crash included); "" when it cannot be read.
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
