package drivers

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRegistryNamesTheDriversThatExist(t *testing.T) {
	r := NewRegistry(Factory{Name: "b"}, Factory{Name: "a"})
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Fatalf("names %s", got)
	}
	_, err := r.Get("nosuch")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("unknown driver: %v", err)
	}
}

func TestOpenRefusesAnUnavailableDriver(t *testing.T) {
	opened := false
	r := NewRegistry(Factory{
		Name:  "x",
		Probe: func(string) Probe { return Probe{Reason: "the kernel lacks x"} },
		Open: func(context.Context, string, Options) (Driver, error) {
			opened = true
			return nil, nil
		},
	})
	_, err := r.Open(context.Background(), "x", "/h", nil)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "the kernel lacks x") || opened {
		t.Fatalf("got %v, opened %v", err, opened)
	}
}

// The probe's class survives Open: a home the driver cannot use is the
// caller's mistake (ErrInvalidArgument), not a missing feature.
func TestOpenKeepsTheProbesClass(t *testing.T) {
	probes := 0
	r := NewRegistry(Factory{
		Name: "x",
		Probe: func(home string) Probe {
			probes++
			if home == "/file" {
				return Probe{Reason: "home /file is not a directory", Class: ErrInvalidArgument}
			}
			return Probe{Reason: "the kernel lacks x"}
		},
	})
	ctx := context.Background()
	_, err := r.Open(ctx, "x", "/file", nil)
	if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("home is a file: %v, want ErrInvalidArgument only", err)
	}
	if _, err := r.Open(ctx, "x", "/h", nil); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidArgument) {
		t.Errorf("probe without a class: %v, want ErrUnavailable", err)
	}
	probes = 0
	_, err = r.Open(ctx, "x", "relative/home", nil)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "relative/home") || probes != 0 {
		t.Errorf("relative home: %v after %d probes, want ErrInvalidArgument before any probe", err, probes)
	}
	if err := (Probe{Reason: "r", Class: ErrInvalidArgument}).Err("x"); err.Error() != "x: invalid argument: r" {
		t.Errorf("Err: %q", err)
	}
}

func TestOptions(t *testing.T) {
	o, err := ParseOptions([]string{"size=10G", "a=b=c"})
	if err != nil || o["size"] != "10G" || o["a"] != "b=c" {
		t.Fatalf("%v %v", o, err)
	}
	if _, err := ParseOptions([]string{"novalue"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("option without =: %v", err)
	}
	err = o.Check("drv", "size")
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), "size") {
		t.Fatalf("unknown option: %v", err)
	}
	if err := (Options{"x": "1"}).Check("drv"); !strings.Contains(err.Error(), "takes no options") {
		t.Fatalf("no options: %v", err)
	}
}

func TestParseKind(t *testing.T) {
	for _, k := range []Kind{KindView, KindActive, KindCommitted} {
		if got, err := ParseKind(k.String()); got != k || err != nil {
			t.Errorf("%s: %v %v", k, got, err)
		}
	}
	if _, err := ParseKind("Active"); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad kind: %v", err)
	}
}

// nilDriver is a Driver whose nil pointer, stored in the interface,
// compares non-nil: what a constructor returning (*T)(nil), err hands back.
type nilDriver struct{ Driver }

func TestOpenedHandsBackANilDriverOnError(t *testing.T) {
	var p *nilDriver
	d, err := Opened(p, ErrInvalidArgument)
	if d != nil || !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Opened((*T)(nil), err) = %#v, %v; want a nil Driver", d, err)
	}
	if d, err := Opened(&nilDriver{}, nil); d == nil || err != nil {
		t.Fatalf("Opened(d, nil) = %v, %v", d, err)
	}
}

func TestCheckOptions(t *testing.T) {
	r := NewRegistry(
		Factory{Name: "strict", CheckOptions: func(o Options) error { return o.Check("strict", "size") }},
		Factory{Name: "lax"},
	)
	if err := r.CheckOptions("strict", Options{"size": "1G"}); err != nil {
		t.Errorf("accepted option refused: %v", err)
	}
	if err := r.CheckOptions("strict", Options{"nosuch": "1"}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown option: %v, want ErrInvalidArgument naming it", err)
	}
	if err := r.CheckOptions("lax", Options{"any": "1"}); err != nil {
		t.Errorf("a driver without CheckOptions: %v, want nil (Open decides)", err)
	}
	if err := r.CheckOptions("nosuch", nil); !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "lax, strict") {
		t.Errorf("options for an unknown driver: %v, want ErrInvalidArgument and ErrNotFound listing the drivers", err)
	}
}
