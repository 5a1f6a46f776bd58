package executor

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/layerlab/layerlab/drivers"
)

// Network is a container's network mode.
type Network string

// The network modes this executor knows; the daemon's bridge networks
// are NetworkNone with a prepared namespace (SpecOpts.NetworkPath).
const (
	NetworkNone Network = "none" // a new network namespace with only lo
	NetworkHost Network = "host" // the host's network namespace
)

// DefaultPath is the PATH a container gets when its environment sets none,
// as Docker sets it.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// SpecOpts are the parts of a Docker create request DefaultSpec uses.
// Zero values mean Docker's defaults.
type SpecOpts struct {
	Env      []string // KEY=value; PATH defaults to DefaultPath
	Cwd      string   // default /
	UID, GID uint32   // default 0 (root)
	Hostname string
	Network  Network // default NetworkNone
	// NetworkPath, with NetworkNone, joins the network namespace at this
	// path (a bind-mounted nsfs file or /proc/PID/ns/net) instead of
	// making a new one: the daemon's bridge networking prepares it.
	NetworkPath string
	Terminal    bool
	ReadOnly    bool // a read-only root filesystem
}

// defaultCapabilities returns the capabilities Docker grants a container
// that asks for none more or less (moby's oci/caps.DefaultCapabilities).
// Functions, not package variables, so no caller can change the defaults.
func defaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// maskedPaths and readonlyPaths are Docker's (moby's oci.DefaultSpec):
// kernel interfaces that leak host information or let a container change
// the host.
func maskedPaths() []string {
	return []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

func readonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// DefaultSpec returns the OCI spec a Docker create of args on rootfs (an
// absolute path to the mounted root filesystem) would give: root user,
// Docker's capabilities, masked and read-only paths, mounts and device
// rules, no new privileges, and mount, pid, ipc and uts namespaces plus a
// network namespace unless the network is the host's. The cgroups path is
// left empty for the executor to fill in per container.
func DefaultSpec(args []string, rootfs string, o SpecOpts) (*specs.Spec, error) {
	if o.Network == "" {
		o.Network = NetworkNone
	}
	if o.Network != NetworkNone && o.Network != NetworkHost {
		return nil, fmt.Errorf("network %q: want none or host: %w", o.Network, drivers.ErrInvalidArgument)
	}
	proc, err := DefaultProcess(args, o)
	if err != nil {
		return nil, err
	}
	namespaces := []specs.LinuxNamespace{
		{Type: specs.MountNamespace}, {Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
	}
	if o.Network == NetworkNone {
		namespaces = append(namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: o.NetworkPath})
	}
	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: rootfs, Readonly: o.ReadOnly},
		Process:  proc,
		Hostname: o.Hostname,
		Mounts:   defaultMounts(),
		Linux: &specs.Linux{
			Namespaces: namespaces,
			// Deny every device, then libcontainer adds the rules for
			// the devices it creates (null, zero, full, random,
			// urandom, tty, ptmx, pts), as Docker's defaults allow.
			Resources:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			MaskedPaths:   maskedPaths(),
			ReadonlyPaths: readonlyPaths(),
		},
	}
	if s.Linux.Seccomp, err = defaultSeccomp(s); err != nil {
		return nil, fmt.Errorf("default seccomp profile: %w", err)
	}
	return s, nil
}

// DefaultProcess returns the process part of DefaultSpec, which is also
// what a docker exec of args runs with: the environment with a PATH, the
// working directory (default /), the user, Docker's capabilities and no
// new privileges. SpecOpts' container-wide fields are ignored.
func DefaultProcess(args []string, o SpecOpts) (*specs.Process, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("default spec: no command: %w", drivers.ErrInvalidArgument)
	}
	if o.Cwd == "" {
		o.Cwd = "/"
	}
	env := withDefaultPath(o.Env)
	if o.Terminal {
		env = append(env, "TERM=xterm")
	}
	caps := defaultCapabilities()
	return &specs.Process{
		Terminal:        o.Terminal,
		Args:            append([]string(nil), args...),
		Env:             env,
		Cwd:             o.Cwd,
		User:            specs.User{UID: o.UID, GID: o.GID},
		NoNewPrivileges: true,
		Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
	}, nil
}

// withDefaultPath returns env with DefaultPath added when it sets no PATH.
func withDefaultPath(env []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range env {
		if len(kv) >= 5 && kv[:5] == "PATH=" {
			return out
		}
	}
	return append([]string{DefaultPath}, out...)
}

// defaultMounts are Docker's default container mounts.
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
	}
}
