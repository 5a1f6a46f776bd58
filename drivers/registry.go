package drivers

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Fact is one thing a probe found out about the machine.
type Fact struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// YesNo is how a fact (or a report cell) that is true or false reads:
// "yes" or "no".
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Probe is the result of asking whether a driver can run with a given home.
type Probe struct {
	// Reason is empty when the driver can run, else one sentence saying why
	// not and what to do.
	Reason string `json:"reason,omitempty"`
	// Class is the sentinel error the reason belongs to, which Err wraps so
	// that it survives Registry.Open: ErrInvalidArgument when the home path
	// itself is wrong (relative, not a directory: the caller must give
	// another), ErrUnavailable when this machine or the filesystem under
	// the home lacks what the driver needs (a kernel feature, a tool, root,
	// btrfs under a btrfs home). Nil means ErrUnavailable.
	Class error `json:"-"`
	// Facts are the kernel and filesystem facts the probe looked at.
	Facts []Fact `json:"facts"`
}

// Available reports whether the probe found nothing in the way.
func (p Probe) Available() bool { return p.Reason == "" }

// Err returns nil when available, else the reason wrapping its Class
// (ErrUnavailable when none is set).
func (p Probe) Err(name string) error {
	if p.Available() {
		return nil
	}
	class := p.Class
	if class == nil {
		class = ErrUnavailable
	}
	return fmt.Errorf("%s: %w: %s", name, class, p.Reason)
}

// Options are driver options ("key=value" pairs, as --storage-opt gives).
type Options map[string]string

// Check returns ErrInvalidArgument naming the first option not in allowed.
func (o Options) Check(driver string, allowed ...string) error {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !contains(allowed, k) {
			if len(allowed) == 0 {
				return fmt.Errorf("%s: option %q: %w: this driver takes no options", driver, k, ErrInvalidArgument)
			}
			return fmt.Errorf("%s: option %q: %w: accepted options are %s", driver, k, ErrInvalidArgument, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// ParseOptions turns "key=value" strings into Options.
func ParseOptions(kvs []string) (Options, error) {
	o := Options{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("option %q: %w: want key=value", kv, ErrInvalidArgument)
		}
		o[k] = v
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Factory describes a driver and opens it.
type Factory struct {
	Name    string
	Summary string
	// Capabilities is what the driver declares before it is opened.
	Capabilities Capabilities
	// Probe checks whether the driver can run with its home at home (which
	// need not exist yet).
	Probe func(home string) Probe
	// Open opens the driver with its state under home, creating home if
	// needed. On error it returns a nil Driver (see Opened).
	Open func(ctx context.Context, home string, opts Options) (Driver, error)
	// CheckOptions, when set, parses opts as Open does, without a home and
	// without touching the machine, so a caller can refuse a bad option
	// before it builds anything (bench makes loop filesystems first).
	// What depends on the home (a size limit needs quota there) is still
	// Open's to refuse.
	CheckOptions func(opts Options) error
}

// Opened returns what a driver constructor returned as a Driver, and a nil
// Driver when err is set: a nil *T stored in the interface would compare
// non-nil, so a caller that closes whatever it got would call Close on a
// nil pointer.
func Opened[D Driver](d D, err error) (Driver, error) {
	if err != nil {
		return nil, err
	}
	return d, nil
}

// Registry holds the drivers a program wires in. It is built once and not
// changed afterwards.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns a registry holding factories.
func NewRegistry(factories ...Factory) *Registry {
	r := &Registry{factories: make(map[string]Factory, len(factories))}
	for _, f := range factories {
		r.factories[f.Name] = f
	}
	return r
}

// Names returns the registered driver names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Get returns the factory registered as name, or an ErrNotFound error that
// lists the drivers that exist.
func (r *Registry) Get(name string) (Factory, error) {
	f, ok := r.factories[name]
	if !ok {
		return Factory{}, fmt.Errorf("storage driver %q: %w; known drivers: %s", name, ErrNotFound, strings.Join(r.Names(), ", "))
	}
	return f, nil
}

// CheckOptions refuses options the driver registered as name would refuse
// whatever its home, without touching the machine. Unknown drivers are
// ErrInvalidArgument here: the options name them.
func (r *Registry) CheckOptions(name string, opts Options) error {
	f, err := r.Get(name)
	if err != nil {
		return fmt.Errorf("options for %w: %w", err, ErrInvalidArgument)
	}
	if f.CheckOptions == nil {
		return nil
	}
	return f.CheckOptions(opts)
}

// Open probes and opens the driver registered as name with its home at
// home. The probe's error keeps its class: a home the driver cannot use is
// ErrInvalidArgument, a machine that lacks what it needs ErrUnavailable.
func (r *Registry) Open(ctx context.Context, name, home string, opts Options) (Driver, error) {
	f, err := r.Get(name)
	if err != nil {
		return nil, err
	}
	// Checked here, before any probe looks at the machine, so a relative
	// home is the caller's mistake for every driver.
	if !filepath.IsAbs(home) {
		return nil, fmt.Errorf("%s: home %q is not an absolute path: %w", name, home, ErrInvalidArgument)
	}
	if err := f.Probe(home).Err(name); err != nil {
		return nil, err
	}
	return f.Open(ctx, home, opts)
}
