package kernel

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A flock this process takes is found, with this process's pid and name.
func TestFlockHolderFindsOurLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if h, ok := FlockHolder(path); ok {
		t.Fatalf("an unlocked file has holder %v", h)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	h, ok := FlockHolder(path)
	if !ok || h.PID != os.Getpid() || h.Comm == "" {
		t.Fatalf("holder %+v %v, want pid %d with its name", h, ok, os.Getpid())
	}
	if !strings.Contains(h.String(), "pid ") || !strings.Contains(h.String(), h.Comm) {
		t.Errorf("String %q", h.String())
	}
}

func TestFlockHolderParsing(t *testing.T) {
	const locks = `1: POSIX  ADVISORY  WRITE 300 08:01:77 0 EOF
2: FLOCK  ADVISORY  WRITE 400 08:01:78 0 EOF
2: -> FLOCK  ADVISORY  WRITE 401 08:01:77 0 EOF
3: FLOCK  ADVISORY  WRITE 500 08:01:77 0 EOF
4: FLOCK  ADVISORY  WRITE 600 00:2a:99 0 EOF
`
	for _, c := range []struct {
		dev, ino uint64
		pid      int
	}{
		{unix.Mkdev(8, 1), 77, 500},    // the POSIX lock and the waiter are passed over
		{unix.Mkdev(0, 0x2a), 99, 600}, // hex minor
		{unix.Mkdev(0, 0x30), 99, 600}, // btrfs: another device, one lock on the inode
		{unix.Mkdev(8, 1), 79, 0},
	} {
		h, ok := flockHolder(bufio.NewScanner(strings.NewReader(locks)), c.dev, c.ino)
		if h.PID != c.pid || ok != (c.pid != 0) {
			t.Errorf("dev %#x ino %d: %+v %v, want pid %d", c.dev, c.ino, h, ok, c.pid)
		}
	}
}
