package containerd

import (
	"errors"
	"strconv"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/vfs"
)

// quotaDriver is a Driver whose Capabilities say Quota, for activeLabels
// alone (it is never called).
type quotaDriver struct{ drivers.Driver }

func (quotaDriver) Capabilities() drivers.Capabilities { return drivers.Capabilities{Quota: true} }

func TestActiveLabels(t *testing.T) {
	a := New(quotaDriver{})
	for _, c := range []struct {
		in   map[string]string
		size string // drivers.LabelSize wanted, "" for none
		err  error
	}{
		{map[string]string{"x": "y"}, "", nil},
		{map[string]string{LabelSize: "64M"}, "67108864", nil},
		{map[string]string{LabelSize: "4096"}, "4096", nil},
		{map[string]string{LabelRootfsSize: "1000", LabelSize: "2000"}, "2000", nil},
		{map[string]string{LabelRootfsSize: "1000"}, "1000", nil},
		{map[string]string{LabelSize: "lots"}, "", drivers.ErrInvalidArgument},
		{map[string]string{LabelSize: "-5"}, "", drivers.ErrInvalidArgument},
		{map[string]string{LabelGIDMapping: "0:1:2"}, "", drivers.ErrNotImplemented},
	} {
		out, err := a.activeLabels(c.in)
		if !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("%v: error %v, want %v", c.in, err, c.err)
			continue
		}
		if err == nil && out[drivers.LabelSize] != c.size {
			t.Errorf("%v: size label %q, want %q", c.in, out[drivers.LabelSize], c.size)
		}
		if err == nil && c.size != "" && len(c.in) != len(out)-1 {
			t.Errorf("%v: the labels given are not all kept: %v", c.in, out)
		}
	}
	// A driver without quota refuses a size, naming why.
	d, err := vfs.Factory().Open(t.Context(), t.TempDir(), nil)
	if err != nil {
		t.Skipf("vfs: %v", err)
	}
	defer d.Close()
	if _, err := New(d).activeLabels(map[string]string{LabelSize: "1G"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("size label on vfs: %v", err)
	}
}

// FuzzActiveLabels: any size label value is either refused as an invalid
// argument or becomes a non-negative byte count.
func FuzzActiveLabels(f *testing.F) {
	for _, s := range []string{"64M", "1g", "0", "4096", "-1", "1.5G", "lots", "9999999999999999999T", ""} {
		f.Add(s)
	}
	a := New(quotaDriver{})
	f.Fuzz(func(t *testing.T, v string) {
		out, err := a.activeLabels(map[string]string{LabelSize: v})
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("%q: %v is not an invalid argument", v, err)
			}
			return
		}
		n, perr := strconv.ParseInt(out[drivers.LabelSize], 10, 64)
		if perr != nil || n < 0 || out[LabelSize] != v {
			t.Fatalf("%q became %v", v, out)
		}
	})
}
