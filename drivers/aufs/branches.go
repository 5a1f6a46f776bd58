package aufs

import (
	"fmt"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// features are the mount options besides the branches.
type features struct {
	xino     string // external inode number file; "" leaves aufs's default
	dirperm1 bool   // check directory permissions on the top branch only
	dio      bool   // direct I/O through to the branches
}

// options returns the data options that follow br: on the first mount.
func (f features) options() []string {
	var o []string
	if f.xino != "" {
		o = append(o, "xino="+f.xino)
	}
	if f.dirperm1 {
		o = append(o, "dirperm1")
	}
	if f.dio {
		o = append(o, "dio")
	}
	return o
}

// Branch permissions as aufs spells them: ro+wh is a read-only branch whose
// whiteouts take effect, which every committed layer is.
const (
	permRW   = "=rw"
	permROWh = "=ro+wh"
)

// branchMounts describes mounting an aufs of the writable branch rw (""
// for a read-only union) over the read-only branches ro, nearest first.
//
// mount(2) copies at most one page of option data, so the first mount
// carries as many branches as fit in pageSize-1 bytes (the data is a
// NUL-terminated string) and the rest follow as remounts, each adding
// branches at the bottom with append:<dir>=ro+wh, as many per remount as
// fit. aufs keeps branch order: rw first, then ro in the order given.
// A read-only union keeps "ro" on every remount, which would otherwise
// make the mount writable.
func branchMounts(rw string, ro []string, pageSize int, f features) ([]drivers.Mount, error) {
	var flags []string
	branches := make([]string, 0, len(ro)+1)
	if rw != "" {
		branches = append(branches, rw+permRW)
	} else {
		flags = []string{"ro"}
	}
	for _, dir := range ro {
		branches = append(branches, dir+permROWh)
	}
	if len(branches) == 0 {
		return nil, fmt.Errorf("aufs mount with no branches: %w", drivers.ErrInvalidArgument)
	}
	for _, br := range branches {
		// aufs splits options at commas and branches at colons, and a
		// branch's permission follows its last '='.
		dir := br[:strings.LastIndexByte(br, '=')]
		if strings.ContainsAny(dir, ",:=") {
			return nil, fmt.Errorf("aufs branch %q contains ',', ':' or '=', which aufs options cannot carry; use a home path without them: %w", dir, drivers.ErrInvalidArgument)
		}
	}
	limit := pageSize - 1
	tail := f.options()
	tailLen := 0
	for _, o := range tail {
		tailLen += 1 + len(o) // each is joined with a comma
	}

	br := "br:" + branches[0]
	if len(br)+tailLen > limit {
		return nil, tooLong(branches[0], pageSize)
	}
	i := 1
	for ; i < len(branches); i++ {
		if len(br)+1+len(branches[i])+tailLen > limit {
			break
		}
		br += ":" + branches[i]
	}
	first := drivers.Mount{Type: "aufs", Source: "none", Options: append(append(append([]string(nil), flags...), br), tail...)}
	mounts := []drivers.Mount{first}

	var batch []string
	batchLen := 0
	flush := func() {
		opts := append(append([]string{"remount"}, flags...), batch...)
		mounts = append(mounts, drivers.Mount{Type: "aufs", Source: "none", Options: opts})
		batch, batchLen = nil, 0
	}
	for ; i < len(branches); i++ {
		opt := "append:" + branches[i]
		if len(opt) > limit {
			return nil, tooLong(branches[i], pageSize)
		}
		n := len(opt)
		if len(batch) > 0 {
			n++ // the comma before it
		}
		if batchLen+n > limit {
			flush()
			n = len(opt)
		}
		batch = append(batch, opt)
		batchLen += n
	}
	if len(batch) > 0 {
		flush()
	}
	return mounts, nil
}

func tooLong(branch string, pageSize int) error {
	return fmt.Errorf("aufs branch %q does not fit in one page (%d bytes) of mount options; use a shorter home path: %w", branch, pageSize, drivers.ErrInvalidArgument)
}
