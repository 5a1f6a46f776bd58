package layer

import (
	"archive/tar"
	"path"
	"strings"
)

// validator checks tar headers one at a time, in order. It keeps the
// symlinks the layer itself has planted so far, because whether "a/x" is
// safe depends on whether an earlier entry made "a" a symlink.
type validator struct {
	absSymlinks, devices bool
	planted              map[string]bool // symlinks of this layer that still exist, by clean path
	below                map[string]int  // per directory, how many planted symlinks lie under it
}

func newValidator(o options) *validator {
	return &validator{
		absSymlinks: o.absSymlinks,
		devices:     o.devices,
		planted:     map[string]bool{},
		below:       map[string]int{},
	}
}

// escapes reports whether the clean relative path p climbs above the root.
func escapes(p string) bool { return p == ".." || strings.HasPrefix(p, "../") }

// check returns an *EntryError when hdr is unsafe or unsupported, and
// records what the entry does to the set of planted symlinks.
func (v *validator) check(hdr *tar.Header) error {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // metadata for the archive, never extracted
	}
	switch {
	case name == "":
		return reject(name, "empty entry name")
	case strings.ContainsRune(name, 0):
		return reject(name, "entry name contains a NUL byte")
	case path.IsAbs(name):
		return reject(name, "entry name is absolute; layer entries are relative to the root")
	}
	clean := path.Clean(name)
	if escapes(clean) {
		return reject(name, "entry name climbs out of the root with .. (resolves to %q)", clean)
	}
	for dir := path.Dir(clean); dir != "."; dir = path.Dir(dir) {
		if v.planted[dir] {
			return reject(name, "parent %q is a symlink created earlier in this layer; extracting would write through it", dir)
		}
	}
	if clean == "." {
		if hdr.Typeflag != tar.TypeDir {
			return reject(name, "entry would replace the root directory with a non-directory (type %q)", hdr.Typeflag)
		}
		return nil
	}

	base := path.Base(clean)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return v.checkWhiteout(name, clean, base)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		v.unplant(clean) // a directory replaces a symlink of the same name
		return nil
	case tar.TypeReg, tar.TypeRegA, tar.TypeFifo: //nolint:staticcheck // TypeRegA still occurs in old layers
	case tar.TypeSymlink:
		if err := v.checkSymlink(name, clean, hdr.Linkname); err != nil {
			return err
		}
		v.removeTree(clean)
		v.plant(clean)
		return nil
	case tar.TypeLink:
		if err := v.checkHardlink(name, hdr.Linkname); err != nil {
			return err
		}
		// A hardlink to a symlink is that symlink under a second name.
		if v.planted[path.Clean(hdr.Linkname)] {
			v.removeTree(clean)
			v.plant(clean)
			return nil
		}
	case tar.TypeChar, tar.TypeBlock:
		if !v.devices {
			kind := "character"
			if hdr.Typeflag == tar.TypeBlock {
				kind = "block"
			}
			return reject(name, "%s device %d:%d refused (use AllowDevices to accept device nodes)", kind, hdr.Devmajor, hdr.Devminor)
		}
	default:
		return reject(name, "unsupported entry type %q", hdr.Typeflag)
	}
	v.removeTree(clean) // a non-directory replaces whatever was there
	return nil
}

func (v *validator) checkWhiteout(name, clean, base string) error {
	if base == whiteoutOpaque {
		return nil // hides the lower contents of its directory, deletes nothing of this layer
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return reject(name, "unknown whiteout marker %q; the OCI spec defines only %s", base, whiteoutOpaque)
	}
	target := strings.TrimPrefix(base, whiteoutPrefix)
	if target == "" || target == "." || target == ".." {
		return reject(name, "whiteout names no file (%q)", target)
	}
	v.removeTree(path.Join(path.Dir(clean), target))
	return nil
}

// checkSymlink refuses targets that point out of the root. A relative
// target is resolved from the link's directory; a lexical check suffices
// because extraction never follows a symlink.
func (v *validator) checkSymlink(name, clean, target string) error {
	if target == "" {
		return reject(name, "symlink has an empty target")
	}
	if strings.ContainsRune(target, 0) {
		return reject(name, "symlink target contains a NUL byte")
	}
	if path.IsAbs(target) {
		if !v.absSymlinks {
			return reject(name, "symlink target %q is absolute (use AllowAbsoluteSymlinks to accept absolute targets)", target)
		}
		return nil
	}
	if resolved := path.Join(path.Dir(clean), target); escapes(resolved) {
		return reject(name, "symlink target %q climbs out of the root (resolves to %q from the link's directory)", target, resolved)
	}
	return nil
}

// checkHardlink refuses targets outside the root. Hardlink targets are
// relative to the root of the layer, not to the link.
func (v *validator) checkHardlink(name, target string) error {
	switch {
	case target == "":
		return reject(name, "hardlink has an empty target")
	case strings.ContainsRune(target, 0):
		return reject(name, "hardlink target contains a NUL byte")
	case path.IsAbs(target):
		return reject(name, "hardlink target %q is absolute", target)
	}
	clean := path.Clean(target)
	if escapes(clean) {
		return reject(name, "hardlink target %q climbs out of the root with .. (resolves to %q)", target, clean)
	}
	if clean == "." {
		return reject(name, "hardlink target %q is the root directory", target)
	}
	for dir := path.Dir(clean); dir != "."; dir = path.Dir(dir) {
		if v.planted[dir] {
			return reject(name, "hardlink target %q lies under %q, a symlink created earlier in this layer", target, dir)
		}
	}
	return nil
}

func (v *validator) plant(p string) {
	v.planted[p] = true
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		v.below[dir]++
	}
}

func (v *validator) unplant(p string) {
	if !v.planted[p] {
		return
	}
	delete(v.planted, p)
	for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
		if v.below[dir]--; v.below[dir] == 0 {
			delete(v.below, dir)
		}
	}
}

// removeTree forgets the planted symlinks at and under p, which the entry
// being checked removes. The counts in below keep this O(depth) unless p
// really holds planted symlinks.
func (v *validator) removeTree(p string) {
	v.unplant(p)
	if v.below[p] == 0 {
		return
	}
	for q := range v.planted {
		if strings.HasPrefix(q, p+"/") {
			v.unplant(q)
		}
	}
}

// isWhiteout reports whether the entry name is a deletion or opaque marker.
func isWhiteout(name string) bool {
	return strings.HasPrefix(path.Base(path.Clean(name)), whiteoutPrefix)
}
