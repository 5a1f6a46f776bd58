package layer

import (
	"archive/tar"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	continuityfs "github.com/containerd/continuity/fs"
)

// kind is what a path is, in the layer or in the snapshot.
type kind uint8

const (
	missing kind = iota
	isDir
	isFile // any non-directory that is not a symlink
	isLink
)

func (k kind) String() string {
	return [...]string{"missing", "directory", "file", "symlink"}[k]
}

// model is the first pass's picture of the snapshot as the layer changes
// it: what the layer has put where, what it has whited out, and, looked up
// lazily, what the snapshot held before. Paths are real paths relative to
// the root, so an entry reached through a symlink of a lower layer is
// recorded where it will land.
//
// It is what lets the first pass refuse, before anything is written, the
// layers that would fail half-way: a hardlink to a file that is not there,
// a file under a file, a whiteout of the layer's own entry.
type model struct {
	o     options
	root  string            // the snapshot's directory; "" for a header-only check
	layer map[string]kind   // paths this layer created and what they are now
	below map[string]int    // per directory, layer paths under it
	gone  map[string]bool   // snapshot paths this layer removed or replaced
	opq   map[string]bool   // directories this layer made opaque
	lower map[string]kind   // cache of the snapshot's paths (lstat)
	dirs  map[string]string // tar directory -> real path
	links map[string]string // targets of the symlinks this layer planted

	entries, bytes int64 // what the budget counts
	opaque         bool  // the layer has opaque markers

	// For the second pass's pool: how many entries name each real path
	// (a hardlink target counts twice), and the last entry's real path.
	uses map[string]int
	last string
}

func newModel(root string, o options) *model {
	return &model{
		o: o, root: root,
		layer: map[string]kind{}, below: map[string]int{}, gone: map[string]bool{},
		opq: map[string]bool{}, lower: map[string]kind{}, dirs: map[string]string{}, links: map[string]string{},
		uses: map[string]int{},
	}
}

// check refuses hdr or records what it does to the tree.
func (m *model) check(hdr *tar.Header) error {
	m.last = ""
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // metadata for the archive, never extracted
	}
	if err := checkHeader(hdr, m.o); err != nil {
		return err
	}
	name := hdr.Name
	clean := path.Clean(name)
	if clean == "." {
		return nil // the root's own entry: Apply leaves the root as it is
	}
	base := path.Base(clean)
	wh := m.o.whiteout(base)
	parent, ok, err := m.resolve(name, path.Dir(clean), !wh)
	if err != nil {
		return err
	}
	if wh {
		m.entries++
		if !ok {
			return nil // deletes nothing; creating its directory would add to the snapshot
		}
		return m.whiteout(name, parent, base)
	}
	real := path.Join(parent, base)
	m.last = real
	m.uses[real]++

	k := isFile
	switch hdr.Typeflag {
	case tar.TypeDir:
		k = isDir
	case tar.TypeSymlink:
		k = isLink
		if err := m.fits(name, parent, hdr.Linkname); err != nil {
			return err
		}
		m.links[real] = hdr.Linkname
	case tar.TypeLink:
		t, tk, err := m.hardlinkTarget(name, real, hdr.Linkname)
		if err != nil {
			return err
		}
		m.uses[t] += 2
		if tk == isLink {
			// A hardlink to a symlink is that symlink under a second name,
			// in another directory: its climb must fit there too.
			k = isLink
			target, err := m.linkText(t)
			if err != nil {
				return reject(name, "hardlink to symlink %q: %v", hdr.Linkname, err)
			}
			if err := m.fits(name, parent, target); err != nil {
				return err
			}
			m.links[real] = target
		}
	}
	m.entries++
	if isRegular(hdr) {
		m.bytes += hdr.Size
	}
	if err := m.overBudget(name); err != nil {
		return err
	}
	if old := m.kindOf(real); old != missing && (k != isDir || old != isDir) {
		m.replace(real, old)
	}
	m.add(real, k)
	return nil
}

// resolve returns the real path of the directory dir (a clean tar path),
// refusing the entry name when dir lies under a symlink this layer planted
// or under something that is not a directory. ok is false when part of
// dir does not exist; with create, the missing directories are recorded
// as the layer's (Apply makes them) and ok is true.
func (m *model) resolve(name, dir string, create bool) (real string, ok bool, err error) {
	if dir == "." {
		return "", true, nil
	}
	if r, ok := m.dirs[dir]; ok {
		return r, true, nil
	}
	cur, ok := "", true
	for _, c := range strings.Split(dir, "/") {
		next := path.Join(cur, c)
		switch m.kindOf(next) {
		case isDir:
			cur = next
		case missing:
			ok = false
			if create {
				m.add(next, isDir)
				ok = true
			}
			cur = next
		case isFile:
			if _, mine := m.layer[next]; mine {
				return "", false, reject(name, "parent %q is a file created earlier in this layer; a file cannot hold entries", "/"+next)
			}
			return "", false, reject(name, "parent %q is a file in the snapshot; a file cannot hold entries", "/"+next)
		case isLink:
			if _, mine := m.layer[next]; mine {
				return "", false, reject(name, "parent %q is a symlink created earlier in this layer; extracting would write through it", "/"+next)
			}
			// A symlink of a lower layer: Apply follows it inside the root.
			host, err := continuityfs.RootPath(m.root, next)
			if err != nil {
				return "", false, reject(name, "parent %q cannot be resolved inside the root: %v", "/"+next, err)
			}
			rel, err := filepath.Rel(m.root, host)
			if err != nil || escapes(rel) {
				return "", false, reject(name, "parent %q resolves outside the root", "/"+next)
			}
			if rel = filepath.ToSlash(rel); rel == "." {
				rel = ""
			}
			switch m.kindOf(rel) {
			case isFile, isLink:
				return "", false, reject(name, "parent %q is a symlink to a file; a file cannot hold entries", "/"+next)
			case missing:
				ok = false
				if create {
					m.add(rel, isDir)
					ok = true
				}
			}
			cur = rel
		}
	}
	if ok {
		m.dirs[dir] = cur
	}
	return cur, ok, nil
}

// fits refuses a relative symlink target with more leading ".." than its
// directory parent (a real path) is deep.
func (m *model) fits(name, parent, target string) error {
	if path.IsAbs(target) {
		return nil
	}
	if depth := depthOf(parent); climb(target) > depth {
		return reject(name, "symlink target %q climbs out of the root: its directory %q is %d levels deep", target, "/"+parent, depth)
	}
	return nil
}

// linkText returns the target of the symlink at real path p, planted by
// this layer or found in the snapshot.
func (m *model) linkText(p string) (string, error) {
	if t, ok := m.links[p]; ok {
		return t, nil
	}
	return os.Readlink(filepath.Join(m.root, p))
}

// hardlinkTarget checks that the target of a hardlink exists as a
// non-directory and is not the link itself, and returns its real path and
// kind.
func (m *model) hardlinkTarget(name, real, target string) (string, kind, error) {
	clean := path.Clean(target)
	parent, _, err := m.resolve(name, path.Dir(clean), false)
	if err != nil {
		return "", missing, err
	}
	t := path.Join(parent, path.Base(clean))
	if t == real {
		return "", missing, reject(name, "hardlink to itself: applying it would delete the file it names")
	}
	if strings.HasPrefix(t, real+"/") {
		return "", missing, reject(name, "hardlink target %q lies under the entry itself, which replacing would delete", target)
	}
	switch k := m.kindOf(t); k {
	case missing:
		return "", missing, reject(name, "hardlink target %q exists neither in this layer nor in the snapshot", target)
	case isDir:
		return "", missing, reject(name, "hardlink target %q is a directory", target)
	default:
		return t, k, nil
	}
}

// whiteout records a deletion or an opaque marker in the real directory
// parent. One whose directory does not exist deletes nothing and is left
// out (creating the directory would add it to the snapshot).
func (m *model) whiteout(name, parent, base string) error {
	if base == whiteoutOpaque {
		m.opq[parent] = true
		m.opaque = true
		m.dirs = map[string]string{}
		return nil
	}
	t := path.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
	if _, ok := m.layer[t]; ok || m.below[t] > 0 {
		return reject(name, "whiteout of %q, an entry of this same layer; OCI whiteouts delete only what lower layers hold", "/"+t)
	}
	if k := m.kindOf(t); k != missing {
		m.replace(t, k)
	}
	return nil
}

// kindOf returns what p is now: the layer's entry, else the snapshot's
// unless the layer removed it.
func (m *model) kindOf(p string) kind {
	if p == "" {
		return isDir
	}
	if k, ok := m.layer[p]; ok {
		return k
	}
	if m.hidden(p) {
		return missing
	}
	return m.lowerKind(p)
}

// hidden reports whether the layer removed the snapshot's p: p or a
// directory above it was whited out or replaced, or lies in an opaque
// directory.
func (m *model) hidden(p string) bool {
	for q := p; q != "."; q = path.Dir(q) {
		if m.gone[q] || m.opq[parentOf(q)] {
			return true
		}
	}
	return false
}

// lowerKind looks p up in the snapshot, without following a final symlink.
func (m *model) lowerKind(p string) kind {
	if m.root == "" {
		return missing
	}
	if k, ok := m.lower[p]; ok {
		return k
	}
	k := missing
	if d := path.Dir(p); d != "." && m.lowerKind(d) != isDir {
		// Under a file or a symlink: the applier resolves symlinks itself.
		k = missing
	} else if fi, err := os.Lstat(filepath.Join(m.root, p)); err == nil {
		k = kindOfMode(fi.Mode())
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		k = isFile // unreadable: treat it as something that is there
	}
	m.lower[p] = k
	return k
}

func kindOfMode(mode fs.FileMode) kind {
	switch {
	case mode.IsDir():
		return isDir
	case mode&fs.ModeSymlink != 0:
		return isLink
	default:
		return isFile
	}
}

// replace records that the layer removes what is at p (old) to put
// something else there.
func (m *model) replace(p string, old kind) {
	m.removeTree(p)
	m.gone[p] = true
	if old == isDir || old == isLink {
		m.dirs = map[string]string{} // resolutions through p changed
	}
}

func (m *model) add(p string, k kind) {
	if _, ok := m.layer[p]; !ok {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			m.below[d]++
		}
	}
	m.layer[p] = k
}

// removeTree forgets the layer's entries at and under p. The counts in
// below keep this O(depth) unless p really holds layer entries.
func (m *model) removeTree(p string) {
	m.forget(p)
	if m.below[p] == 0 {
		return
	}
	for q := range m.layer {
		if strings.HasPrefix(q, p+"/") {
			m.forget(q)
		}
	}
}

func (m *model) forget(p string) {
	if _, ok := m.layer[p]; !ok {
		return
	}
	delete(m.layer, p)
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if m.below[d]--; m.below[d] == 0 {
			delete(m.below, d)
		}
	}
}

func (m *model) overBudget(name string) error {
	b := m.o.budget
	switch {
	case b == nil:
		return nil
	case b.Bytes > 0 && m.bytes > b.Bytes:
		return reject(name, "the layer's files add up to %d bytes by here, more than the budget of %d bytes (the snapshot's quota or free space, or WithBudget)", m.bytes, b.Bytes)
	case b.Inodes > 0 && m.entries > b.Inodes:
		return reject(name, "the layer has %d entries by here, more than the budget of %d inodes (the snapshot's free inodes, or WithBudget)", m.entries, b.Inodes)
	}
	return nil
}

// parentOf is path.Dir with "" for the root, as real paths spell it.
func parentOf(p string) string {
	if d := path.Dir(p); d != "." {
		return d
	}
	return ""
}

// depthOf counts the components of a real relative path.
func depthOf(p string) int {
	if p == "" {
		return 0
	}
	return strings.Count(p, "/") + 1
}
