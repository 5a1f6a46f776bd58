package containerd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/errdefs"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/vfs"
)

func TestErrMapsEverySentinel(t *testing.T) {
	classes := []error{
		errdefs.ErrNotFound, errdefs.ErrAlreadyExists, errdefs.ErrInvalidArgument,
		errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable, errdefs.ErrNotImplemented,
	}
	for _, c := range []struct{ sentinel, class error }{
		{drivers.ErrNotFound, errdefs.ErrNotFound},
		{drivers.ErrAlreadyExists, errdefs.ErrAlreadyExists},
		{drivers.ErrInvalidArgument, errdefs.ErrInvalidArgument},
		{drivers.ErrFailedPrecondition, errdefs.ErrFailedPrecondition},
		{drivers.ErrUnavailable, errdefs.ErrUnavailable},
		{drivers.ErrNotImplemented, errdefs.ErrNotImplemented},
		{drivers.ErrClosed, errdefs.ErrUnavailable},
	} {
		for _, in := range []error{
			c.sentinel,
			fmt.Errorf("stat %q: %w", "k", c.sentinel),
			fmt.Errorf("vfs: %w", fmt.Errorf("stat %q: %w", "k", c.sentinel)),
			errors.Join(errors.New("first"), fmt.Errorf("second: %w", c.sentinel)),
		} {
			got := Err(in)
			if got.Error() != in.Error() {
				t.Errorf("Err(%q) says %q: the message changed", in, got)
			}
			if !errors.Is(got, c.sentinel) || !errors.Is(got, c.class) {
				t.Errorf("Err(%q) = %v: Is %v %v, Is %v %v; want both", in, got, c.sentinel, errors.Is(got, c.sentinel), c.class, errors.Is(got, c.class))
			}
			for _, other := range classes {
				if other != c.class && errors.Is(got, other) {
					t.Errorf("Err(%q) is also %v", in, other)
				}
			}
			// Wrapped again on the way up, it keeps both classes.
			outer := fmt.Errorf("snapshotter: %w", got)
			if !errors.Is(outer, c.sentinel) || !errors.Is(outer, c.class) {
				t.Errorf("%v wrapped again lost a class", got)
			}
		}
	}
	if Err(nil) != nil {
		t.Error("Err(nil) is not nil")
	}
	plain := errors.New("disk on fire")
	if got := Err(plain); got != plain {
		t.Errorf("Err of an unclassed error = %v, want it unchanged", got)
	}
}

// fake is an in-memory drivers.Snapshotter for the adapter's own tests: it
// returns err from every method, and its Walk applies the filters it is
// given, as a driver's store does, and records them.
type fake struct {
	infos  []drivers.Info
	err    error
	given  [][]drivers.Filter // the filters of each Walk
	handed int                // infos the last Walk passed to fn
}

func (f *fake) Stat(ctx context.Context, key string) (drivers.Info, error) {
	if f.err != nil {
		return drivers.Info{}, f.err
	}
	for _, i := range f.infos {
		if i.Name == key {
			return i, nil
		}
	}
	return drivers.Info{}, fmt.Errorf("snapshot %q: %w", key, drivers.ErrNotFound)
}

func (f *fake) Update(ctx context.Context, info drivers.Info, fieldpaths ...string) (drivers.Info, error) {
	return drivers.Info{}, f.err
}

func (f *fake) Usage(ctx context.Context, key string) (drivers.Usage, error) {
	return drivers.Usage{}, f.err
}

func (f *fake) Mounts(ctx context.Context, key string) ([]drivers.Mount, error) { return nil, f.err }

func (f *fake) Prepare(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return nil, f.err
}

func (f *fake) View(ctx context.Context, key, parent string, opts ...drivers.Opt) ([]drivers.Mount, error) {
	return nil, f.err
}

func (f *fake) Commit(ctx context.Context, name, key string, opts ...drivers.Opt) error { return f.err }

func (f *fake) Remove(ctx context.Context, key string) error { return f.err }

func (f *fake) Walk(ctx context.Context, fn drivers.WalkFunc, filters ...drivers.Filter) error {
	if f.err != nil {
		return f.err
	}
	f.given = append(f.given, filters)
	f.handed = 0
	for _, i := range f.infos {
		if drivers.MatchAny(i, filters) {
			f.handed++
			if err := fn(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

func (f *fake) Close() error { return f.err }

// Every method of the adapter hands back the driver's error with
// containerd's class added.
func TestEveryMethodMapsErrors(t *testing.T) {
	ctx := context.Background()
	cause := fmt.Errorf("snapshot %q: %w", "k", drivers.ErrFailedPrecondition)
	a := New(&fake{err: cause})
	for what, err := range map[string]error{
		"Stat":    second(a.Stat(ctx, "k")),
		"Update":  second(a.Update(ctx, snapshots.Info{Name: "k"})),
		"Usage":   second(a.Usage(ctx, "k")),
		"Mounts":  second(a.Mounts(ctx, "k")),
		"Prepare": second(a.Prepare(ctx, "k", "")),
		"View":    second(a.View(ctx, "k", "p")),
		"Commit":  a.Commit(ctx, "n", "k"),
		"Remove":  a.Remove(ctx, "k"),
		"Walk":    a.Walk(ctx, func(context.Context, snapshots.Info) error { return nil }),
		"Close":   a.Close(),
	} {
		if !errdefs.IsFailedPrecondition(err) || !errors.Is(err, drivers.ErrFailedPrecondition) || !strings.Contains(fmt.Sprint(err), `"k"`) {
			t.Errorf("%s: %v, want the driver's message with both classes", what, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// tree is the snapshots the Walk tests filter.
func tree() []drivers.Info {
	return []drivers.Info{
		{Kind: drivers.KindCommitted, Name: "base", Labels: map[string]string{"a": "b", "x.y": "z"}},
		{Kind: drivers.KindCommitted, Name: "mid", Parent: "base", Labels: map[string]string{"a": "c"}},
		{Kind: drivers.KindCommitted, Name: "top", Parent: "mid"},
		{Kind: drivers.KindActive, Name: "act", Parent: "top", Labels: map[string]string{"a": "b"}},
		{Kind: drivers.KindActive, Name: "act2", Parent: "base", Labels: map[string]string{"a": "b", "tier": "hot"}},
		{Kind: drivers.KindView, Name: "view", Parent: "mid"},
		{Kind: drivers.KindActive, Name: "solo", Labels: map[string]string{"a": ""}},
	}
}

func labels(kv ...string) map[string]string {
	m := make(map[string]string)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// walkCases are containerd filter lists, what the adapter should hand the
// store (nil: nothing, the adapter filters alone) and how many of tree()
// match.
type walkCase struct {
	filters []string
	store   []drivers.Filter
	n       int
}

func walkCases() []walkCase {
	return []walkCase{
		{nil, nil, 7},
		{[]string{""}, []drivers.Filter{{}}, 7},
		{[]string{"kind==committed"}, []drivers.Filter{{Kind: drivers.KindCommitted}}, 3},
		{[]string{"kind==view"}, []drivers.Filter{{Kind: drivers.KindView}}, 1},
		{[]string{"parent==base"}, []drivers.Filter{{Parent: "base"}}, 2},
		{[]string{`parent==""`}, []drivers.Filter{{Base: true}}, 2},
		{[]string{`labels."a"==b`}, []drivers.Filter{{Labels: labels("a", "b")}}, 3},
		{[]string{"labels.a==b"}, []drivers.Filter{{Labels: labels("a", "b")}}, 3},
		{[]string{`labels.a==""`}, []drivers.Filter{{Labels: labels("a", "")}}, 1},
		{[]string{`labels."x.y"==z`}, []drivers.Filter{{Labels: labels("x.y", "z")}}, 1},
		{[]string{"labels.x.y==z"}, []drivers.Filter{{Labels: labels("x.y", "z")}}, 1},
		{[]string{"name==top"}, []drivers.Filter{{Name: "top"}}, 1},
		{[]string{`name=="top"`}, []drivers.Filter{{Name: "top"}}, 1},
		{[]string{"name==top", "name==act"}, []drivers.Filter{{Name: "top"}, {Name: "act"}}, 2},
		{[]string{"kind==active,labels.a==b"}, []drivers.Filter{{Kind: drivers.KindActive, Labels: labels("a", "b")}}, 2},
		{[]string{"kind==active,parent==base,labels.tier==hot"}, []drivers.Filter{{Kind: drivers.KindActive, Parent: "base", Labels: labels("tier", "hot")}}, 1},
		{[]string{"kind==committed,labels.a==b", "kind==view"}, []drivers.Filter{{Kind: drivers.KindCommitted, Labels: labels("a", "b")}, {Kind: drivers.KindView}}, 2},
		// Not translatable: the adapter filters alone, with the same result.
		{[]string{"name~=^a"}, nil, 2},
		{[]string{`labels."a"!=b`}, nil, 4},
		{[]string{"labels.a"}, nil, 5},
		{[]string{`parent!=""`}, nil, 5},
		{[]string{"kind==committed", "name~=^v"}, nil, 4},
		{[]string{"kind==active,kind==view"}, nil, 0},
		{[]string{"name==top,name==mid"}, nil, 0},
		{[]string{"kind==bogus"}, nil, 0},
		{[]string{"kind.x==committed"}, nil, 3},
		{[]string{" name == top"}, nil, 1},
	}
}

// reference is containerd's own adaptor for snapshot infos
// (core/metadata/adaptors.go adaptSnapshot, unexported there): what
// containerd's metadata store matches filters against.
func reference(info snapshots.Info) filters.Adaptor {
	return filters.AdapterFunc(func(fieldpath []string) (string, bool) {
		if len(fieldpath) == 0 {
			return "", false
		}
		switch fieldpath[0] {
		case "kind":
			switch info.Kind {
			case snapshots.KindActive:
				return "active", true
			case snapshots.KindView:
				return "view", true
			case snapshots.KindCommitted:
				return "committed", true
			}
		case "name":
			return info.Name, true
		case "parent":
			return info.Parent, true
		case "labels":
			if len(info.Labels) == 0 {
				return "", false
			}
			v, ok := info.Labels[strings.Join(fieldpath[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

// expected is what containerd's filters package selects from infos.
func expected(t *testing.T, infos []snapshots.Info, fs []string) []string {
	t.Helper()
	f, err := filters.ParseAll(fs...)
	if err != nil {
		t.Fatalf("containerd cannot parse %q: %v", fs, err)
	}
	var names []string
	for _, i := range infos {
		if f.Match(reference(i)) {
			names = append(names, i.Name)
		}
	}
	sort.Strings(names)
	return names
}

func walkNames(t *testing.T, a Snapshotter, fs []string) []string {
	t.Helper()
	var names []string
	err := a.Walk(context.Background(), func(_ context.Context, i snapshots.Info) error {
		names = append(names, i.Name)
		return nil
	}, fs...)
	if err != nil {
		t.Fatalf("walk %q: %v", fs, err)
	}
	sort.Strings(names)
	return names
}

func TestWalkTranslatesFiltersForTheStore(t *testing.T) {
	f := &fake{infos: tree()}
	a := New(f)
	var all []snapshots.Info
	for _, i := range f.infos {
		all = append(all, toInfo(i))
	}
	for _, c := range walkCases() {
		got, want := walkNames(t, a, c.filters), expected(t, all, c.filters)
		if !reflect.DeepEqual(got, want) || len(got) != c.n {
			t.Errorf("walk %q: %v, containerd selects %v (want %d)", c.filters, got, want, c.n)
		}
		given := f.given[len(f.given)-1]
		if len(c.store) == 0 && len(given) != 0 || len(c.store) != 0 && !reflect.DeepEqual(given, c.store) {
			t.Errorf("walk %q gave the store %+v, want %+v", c.filters, given, c.store)
		}
		if len(c.store) != 0 && f.handed != len(want) {
			t.Errorf("walk %q: the store handed back %d snapshots for %d matches; it did not filter", c.filters, f.handed, len(want))
		}
	}
}

func TestWalkRefusesBadFilters(t *testing.T) {
	a := New(&fake{infos: tree()})
	for _, fs := range [][]string{{"name=="}, {"kind==active", "labels.=x"}, {"name==/x/"}, {"name==a b"}} {
		err := a.Walk(context.Background(), func(context.Context, snapshots.Info) error {
			t.Errorf("walk %q called fn", fs)
			return nil
		}, fs...)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("walk %q: %v, want invalid argument", fs, err)
		}
	}
}

// The same filters through a real vfs driver (its bbolt store applies the
// translated filters) select what containerd would.
func TestWalkFiltersThroughVFS(t *testing.T) {
	ctx := context.Background()
	d, err := vfs.New(ctx, filepath.Join(t.TempDir(), "home"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := New(d)
	defer a.Close()
	for _, i := range tree() {
		opt := snapshots.WithLabels(i.Labels)
		switch i.Kind {
		case drivers.KindCommitted:
			if _, err = a.Prepare(ctx, i.Name+"-active", i.Parent); err == nil {
				err = a.Commit(ctx, i.Name, i.Name+"-active", opt)
			}
		case drivers.KindActive:
			_, err = a.Prepare(ctx, i.Name, i.Parent, opt)
		case drivers.KindView:
			_, err = a.View(ctx, i.Name, i.Parent, opt)
		}
		if err != nil {
			t.Fatalf("make %s %q: %v", i.Kind, i.Name, err)
		}
	}
	var all []snapshots.Info
	if err := a.Walk(ctx, func(_ context.Context, i snapshots.Info) error { all = append(all, i); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("vfs holds %d snapshots, made 7", len(all))
	}
	for _, c := range walkCases() {
		got, want := walkNames(t, a, c.filters), expected(t, all, c.filters)
		if !reflect.DeepEqual(got, want) || len(got) != c.n {
			t.Errorf("walk %q: %v, containerd selects %v (want %d)", c.filters, got, want, c.n)
		}
	}

	// The driver's errors arrive with containerd's classes.
	if _, err := a.Stat(ctx, "nosuch"); !errdefs.IsNotFound(err) || !errors.Is(err, drivers.ErrNotFound) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("stat of a missing key: %v", err)
	}
	if _, err := a.Prepare(ctx, "act", "top"); !errdefs.IsAlreadyExists(err) || !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Errorf("prepare of an existing key: %v", err)
	}
	if err := a.Remove(ctx, "base"); !errdefs.IsFailedPrecondition(err) || !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("remove of a parent: %v", err)
	}
	if _, err := a.Prepare(ctx, "", ""); !errdefs.IsInvalidArgument(err) {
		t.Errorf("prepare with an empty key: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Stat(ctx, "base"); !errdefs.IsUnavailable(err) || !errors.Is(err, drivers.ErrClosed) {
		t.Errorf("stat after close: %v", err)
	}
}
