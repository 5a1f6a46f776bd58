package volumes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/layerlab/layerlab/drivers"
)

// MountPoint is one mount of a container, resolved at create (an
// anonymous volume has its name by then) and kept in its record: what
// inspect shows, and what start needs besides.
type MountPoint struct {
	container.MountPoint
	NoCopy  bool     `json:",omitempty"` // volume-nocopy: no copy of the image's content into a new volume
	Options []string `json:",omitempty"` // a tmpfs's mount options (size=, mode=)
	// Labels and DriverOpts are --mount's volume-label and volume-opt,
	// for a volume the mount creates.
	Labels     map[string]string `json:",omitempty"`
	DriverOpts map[string]string `json:",omitempty"`
}

// The -v mode words besides ro and rw (dockerd's on Linux).
const modeNoCopy = "nocopy"

// ParseBind reads one HostConfig.Binds entry as dockerd does on Linux:
// /ctr (an anonymous volume), SRC:/ctr or SRC:/ctr:MODE, where SRC is an
// absolute host path (a bind) or a volume name, and MODE is a comma list
// of ro|rw, a propagation (rprivate, private, rshared, shared, rslave,
// slave), nocopy, and SELinux's z|Z (accepted and ignored: no SELinux
// here). A relative path is neither and is refused with dockerd's words.
func ParseBind(raw string) (MountPoint, error) {
	var m MountPoint
	parts := strings.Split(raw, ":")
	var src, dst, mode string
	switch len(parts) {
	case 1:
		dst = parts[0]
	case 2:
		if validMode(parts[1]) {
			return m, fmt.Errorf("invalid volume specification: '%s': a mode needs a source and a destination (SRC:/ctr:%s): %w", raw, parts[1], drivers.ErrInvalidArgument)
		}
		src, dst = parts[0], parts[1]
	case 3:
		src, dst, mode = parts[0], parts[1], parts[2]
	default:
		return m, fmt.Errorf("invalid volume specification: '%s': want /ctr, SRC:/ctr or SRC:/ctr:MODE: %w", raw, drivers.ErrInvalidArgument)
	}
	if dst == "" {
		return m, fmt.Errorf("invalid volume specification: '%s': no destination: %w", raw, drivers.ErrInvalidArgument)
	}
	if err := checkTarget("volume", dst); err != nil {
		return m, err
	}
	m.Destination, m.Mode, m.RW = filepath.Clean(dst), mode, true
	if mode != "" && !validMode(mode) {
		return m, fmt.Errorf("invalid mode: %s: want ro or rw, a propagation (rprivate, private, rshared, shared, rslave, slave), nocopy, z or Z, comma-separated: %w", mode, drivers.ErrInvalidArgument)
	}
	for _, w := range strings.Split(mode, ",") {
		switch {
		case w == "ro":
			m.RW = false
		case w == modeNoCopy:
			m.NoCopy = true
		case slices.Contains(mount.Propagations, mount.Propagation(w)):
			m.Propagation = mount.Propagation(w)
		}
	}
	switch {
	case src == "":
		m.Type, m.Driver = mount.TypeVolume, LocalDriver // anonymous: named at create
	case filepath.IsAbs(src):
		m.Type, m.Source = mount.TypeBind, filepath.Clean(src)
		if m.NoCopy {
			return m, fmt.Errorf("invalid mode: %s: nocopy applies to volumes, not to the bind of %s: %w", mode, src, drivers.ErrInvalidArgument)
		}
		if m.Propagation == "" {
			m.Propagation = mount.PropagationRPrivate
		}
	default:
		if err := ValidName(src); err != nil {
			return m, err
		}
		m.Type, m.Name, m.Driver = mount.TypeVolume, src, LocalDriver
	}
	if m.Type == mount.TypeVolume && m.Propagation != "" {
		return m, fmt.Errorf("invalid mode: %s: a propagation applies to binds, not to the volume at %s: %w", mode, dst, drivers.ErrInvalidArgument)
	}
	return m, nil
}

// validMode says whether mode is a -v mode: each word known, at most one
// of ro|rw, one propagation and one nocopy.
func validMode(mode string) bool {
	if mode == "" {
		return false
	}
	var rw, prop, nocopy, label int
	for _, w := range strings.Split(mode, ",") {
		switch {
		case w == "ro" || w == "rw":
			rw++
		case w == modeNoCopy:
			nocopy++
		case w == "z" || w == "Z":
			label++
		case slices.Contains(mount.Propagations, mount.Propagation(w)):
			prop++
		default:
			return false
		}
	}
	return rw <= 1 && prop <= 1 && nocopy <= 1 && label <= 1
}

// checkTarget refuses a destination that is not absolute, or is "/".
func checkTarget(typ, dst string) error {
	if !filepath.IsAbs(dst) {
		return fmt.Errorf("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute: %w", typ, dst, drivers.ErrInvalidArgument)
	}
	if filepath.Clean(dst) == "/" {
		return fmt.Errorf("invalid specification: destination can't be '/': %w", drivers.ErrInvalidArgument)
	}
	return nil
}

// ParseMount checks one HostConfig.Mounts entry (the CLI parsed --mount
// into it) as dockerd's validateMountConfig does and returns its mount
// point: bind (the source must exist), volume (named or anonymous, with
// volume-nocopy, volume-label and volume-opt) or tmpfs (tmpfs-size,
// tmpfs-mode).
func ParseMount(c mount.Mount) (MountPoint, error) {
	m := MountPoint{MountPoint: container.MountPoint{Type: c.Type, RW: !c.ReadOnly, Destination: filepath.Clean(c.Target)}}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid mount config for type %q: %s: %w", c.Type, fmt.Sprintf(format, args...), drivers.ErrInvalidArgument)
	}
	if c.Target == "" {
		return m, bad("field Target must not be empty")
	}
	if err := checkTarget(string(c.Type), c.Target); err != nil {
		return m, err
	}
	switch c.Type {
	case mount.TypeBind:
		if c.VolumeOptions != nil || c.TmpfsOptions != nil {
			return m, bad("only bind options (bind-propagation) apply to a bind")
		}
		if c.Source == "" {
			return m, bad("field Source must not be empty")
		}
		if !filepath.IsAbs(c.Source) {
			return m, bad("invalid mount path: '%s' mount path must be absolute", c.Source)
		}
		if _, err := os.Stat(c.Source); err != nil {
			return m, bad("bind source path does not exist: %s", c.Source)
		}
		m.Source, m.Propagation = filepath.Clean(c.Source), mount.PropagationRPrivate
		if o := c.BindOptions; o != nil {
			if o.Propagation != "" {
				if !slices.Contains(mount.Propagations, o.Propagation) {
					return m, bad("bind-propagation %q: want one of rprivate, private, rshared, shared, rslave, slave", o.Propagation)
				}
				m.Propagation = o.Propagation
			}
			if o.NonRecursive || o.ReadOnlyNonRecursive || o.ReadOnlyForceRecursive || o.CreateMountpoint {
				return m, bad("bind-nonrecursive, bind-create-mountpoint and the recursive read-only options are not supported by layerlabd")
			}
		}
	case mount.TypeVolume:
		if c.BindOptions != nil || c.TmpfsOptions != nil {
			return m, bad("only volume options (volume-nocopy, volume-label, volume-opt) apply to a volume")
		}
		if c.Source != "" {
			if err := ValidName(c.Source); err != nil {
				return m, err
			}
		}
		m.Name, m.Driver = c.Source, LocalDriver
		if o := c.VolumeOptions; o != nil {
			if o.Subpath != "" {
				return m, bad("volume-subpath is not supported by layerlabd")
			}
			m.NoCopy, m.Labels = o.NoCopy, o.Labels
			if dc := o.DriverConfig; dc != nil {
				if dc.Name != "" && dc.Name != LocalDriver {
					return m, fmt.Errorf("error looking up volume plugin %s: plugin %q not found: %w", dc.Name, dc.Name, drivers.ErrNotFound)
				}
				m.DriverOpts = dc.Options
			}
		}
	case mount.TypeTmpfs:
		if c.BindOptions != nil || c.VolumeOptions != nil {
			return m, bad("only tmpfs options (tmpfs-size, tmpfs-mode) apply to a tmpfs")
		}
		if c.Source != "" {
			return m, bad("field Source must not be specified")
		}
		if o := c.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return m, bad("tmpfs-size %d: want a positive size", o.SizeBytes)
			}
			if o.SizeBytes > 0 {
				m.Options = append(m.Options, "size="+strconv.FormatInt(o.SizeBytes, 10))
			}
			if o.Mode != 0 {
				// The CLI sends tmpfs-mode's octal bits as they are (01777);
				// Go's os.ModeSticky is taken too.
				bits := uint64(o.Mode) & 0o7777
				if o.Mode&os.ModeSticky != 0 {
					bits |= 0o1000
				}
				m.Options = append(m.Options, "mode="+strconv.FormatUint(bits, 8))
			}
			if len(o.Options) > 0 {
				return m, bad("tmpfs options other than tmpfs-size and tmpfs-mode are not supported by layerlabd")
			}
		}
	default:
		return m, fmt.Errorf("mount type %q is not supported (bind, volume and tmpfs are): %w", c.Type, drivers.ErrInvalidArgument)
	}
	return m, nil
}

// ParseTmpfs reads one HostConfig.Tmpfs entry (--tmpfs /path[:opts]):
// the options are mount(8)'s (size=64m, mode=1777, exec, ...) on top of
// dockerd's defaults noexec, nosuid and nodev.
func ParseTmpfs(dst, opts string) (MountPoint, error) {
	m := MountPoint{MountPoint: container.MountPoint{Type: mount.TypeTmpfs, Destination: filepath.Clean(dst), RW: true}}
	if err := checkTarget("tmpfs", dst); err != nil {
		return m, err
	}
	m.Options = []string{"noexec", "nosuid", "nodev"}
	for _, o := range strings.Split(opts, ",") {
		switch {
		case o == "":
		case o == "ro":
			m.RW = false
		case strings.ContainsAny(o, " \t\n\x00"):
			return m, fmt.Errorf("--tmpfs %s: option %q has a blank: %w", dst, o, drivers.ErrInvalidArgument)
		default:
			m.Options = append(m.Options, o)
		}
	}
	return m, nil
}
