package layer

import (
	"archive/tar"
	"encoding/binary"
	"path"
	"strings"
)

// checkName returns an *EntryError when the entry name alone is unsafe,
// else its clean form. It needs no state, so the fuzz target and Generate
// call it directly.
func checkName(name string) (string, error) {
	switch {
	case name == "":
		return "", reject(name, "empty entry name")
	case strings.ContainsRune(name, 0):
		return "", reject(name, "entry name contains a NUL byte")
	case path.IsAbs(name):
		return "", reject(name, "entry name is absolute; layer entries are relative to the root")
	}
	clean := path.Clean(name)
	if escapes(clean) {
		return "", reject(name, "entry name climbs out of the root with .. (resolves to %q)", clean)
	}
	return clean, nil
}

// escapes reports whether the clean relative path p climbs above the root.
func escapes(p string) bool { return p == ".." || strings.HasPrefix(p, "../") }

// checkHeader applies the rules that need only the header: entry types,
// devices, link targets' form, whiteout names and xattrs.
func checkHeader(hdr *tar.Header, o options) error {
	name := hdr.Name
	clean, err := checkName(name)
	if err != nil {
		return err
	}
	if clean == "." && hdr.Typeflag != tar.TypeDir {
		return reject(name, "entry would replace the root directory with a non-directory (type %q)", hdr.Typeflag)
	}
	base := path.Base(clean)
	if o.whiteout(base) {
		switch {
		case base == whiteoutOpaque:
		case strings.HasPrefix(base, whiteoutMeta):
			return reject(name, "unknown whiteout marker %q; the OCI spec defines only %s", base, whiteoutOpaque)
		default:
			if t := strings.TrimPrefix(base, whiteoutPrefix); t == "." || t == ".." {
				return reject(name, "whiteout names no file (%q)", t)
			}
		}
		return nil
	}
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeFifo: //nolint:staticcheck // TypeRegA still occurs in old layers
	case tar.TypeSymlink:
		if err := checkSymlinkForm(name, hdr.Linkname, o); err != nil {
			return err
		}
	case tar.TypeLink:
		if err := checkHardlinkForm(name, hdr.Linkname); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		if !o.devices {
			kind := "character"
			if hdr.Typeflag == tar.TypeBlock {
				kind = "block"
			}
			return reject(name, "%s device %d:%d refused (use AllowDevices to accept device nodes)", kind, hdr.Devmajor, hdr.Devminor)
		}
	default:
		return reject(name, "unsupported entry type %q", hdr.Typeflag)
	}
	return checkXattrs(hdr)
}

// checkSymlinkForm checks a symlink target without looking at the tree. A
// relative target may climb with ".." only at its start: "a/../b" goes
// through a's target when a is a symlink, which a later layer can change,
// so a check of the whole tree today would prove nothing tomorrow. With
// only leading "..", a link stays inside the root whatever the tree holds,
// as long as the climb fits the depth of the link's own directory, which
// the model checks (validator.symlink).
func checkSymlinkForm(name, target string, o options) error {
	switch {
	case target == "":
		return reject(name, "symlink has an empty target")
	case strings.ContainsRune(target, 0):
		return reject(name, "symlink target contains a NUL byte")
	case path.IsAbs(target):
		if !o.allowAbs() {
			return reject(name, "symlink target %q is absolute (absolute targets are refused by AllowAbsoluteSymlinks(false))", target)
		}
		return nil
	}
	climbing := true
	for _, c := range strings.Split(target, "/") {
		switch {
		case c == "" || c == ".":
		case c == "..":
			if !climbing {
				return reject(name, "symlink target %q has .. after a path component; it would resolve through whatever that component is at the time (only leading .. are accepted)", target)
			}
		default:
			climbing = false
		}
	}
	return nil
}

// climb returns how many leading ".." a relative symlink target has.
func climb(target string) int {
	n := 0
	for _, c := range strings.Split(target, "/") {
		switch c {
		case "", ".":
		case "..":
			n++
		default:
			return n
		}
	}
	return n
}

// checkHardlinkForm refuses targets outside the root. Hardlink targets are
// relative to the root of the layer, not to the link.
func checkHardlinkForm(name, target string) error {
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
	if clean == path.Clean(name) {
		return reject(name, "hardlink to itself: applying it would delete the file it names")
	}
	return nil
}

const xattrPrefix = "SCHILY.xattr."

// Limits the kernel puts on extended attributes (XATTR_NAME_MAX,
// XATTR_SIZE_MAX) and the capability formats it accepts
// (VFS_CAP_REVISION_2 in 20 bytes, VFS_CAP_REVISION_3 in 24).
const (
	xattrNameMax  = 255
	xattrSizeMax  = 64 << 10
	capRevMask    = 0xFF000000
	capRevision2  = 0x02000000
	capRevision3  = 0x03000000
	aclVersion    = 2
	aclHeaderSize = 4
	aclEntrySize  = 8
)

// checkXattrs refuses, before anything is written, the extended attributes
// the kernel would refuse half-way through the layer.
func checkXattrs(hdr *tar.Header) error {
	for k, v := range hdr.PAXRecords {
		if !strings.HasPrefix(k, xattrPrefix) {
			continue
		}
		key := strings.TrimPrefix(k, xattrPrefix)
		switch {
		case len(key) > xattrNameMax:
			return reject(hdr.Name, "xattr name %.40q... is longer than %d bytes", key, xattrNameMax)
		case len(v) > xattrSizeMax:
			return reject(hdr.Name, "xattr %s holds %d bytes, more than the kernel's %d", key, len(v), xattrSizeMax)
		case strings.HasPrefix(key, "trusted."):
			// Dropped by Apply (as containerd does): an image must not set
			// the xattrs overlayfs trusts.
		case key == "security.capability":
			if !validCapability(v) {
				return reject(hdr.Name, "xattr security.capability is malformed (%d bytes); the kernel takes revision 2 in 20 bytes or revision 3 in 24", len(v))
			}
		case key == "system.posix_acl_access" || key == "system.posix_acl_default":
			if !validACL(v) {
				return reject(hdr.Name, "xattr %s is not a POSIX ACL (version %d, 4-byte header, 8-byte entries)", key, aclVersion)
			}
		case strings.HasPrefix(key, "user.") || strings.HasPrefix(key, "security."):
		default:
			return reject(hdr.Name, "xattr %q is in no namespace a layer may set (user., security., system.posix_acl_*)", key)
		}
	}
	return nil
}

func validCapability(v string) bool {
	if len(v) < 4 {
		return false
	}
	rev := binary.LittleEndian.Uint32([]byte(v[:4])) & capRevMask
	return (len(v) == 20 && rev == capRevision2) || (len(v) == 24 && rev == capRevision3)
}

func validACL(v string) bool {
	if len(v) < aclHeaderSize || (len(v)-aclHeaderSize)%aclEntrySize != 0 {
		return false
	}
	return binary.LittleEndian.Uint32([]byte(v[:4])) == aclVersion
}

// isWhiteout reports whether the entry name is a deletion or opaque marker.
func isWhiteout(name string) bool {
	return strings.HasPrefix(path.Base(path.Clean(name)), whiteoutPrefix)
}

// isSparse reports whether hdr is a GNU sparse file (old format or PAX).
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// isRegular reports whether hdr carries file content.
func isRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA || hdr.Typeflag == tar.TypeGNUSparse //nolint:staticcheck // TypeRegA still occurs in old layers
}
