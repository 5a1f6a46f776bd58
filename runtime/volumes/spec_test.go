package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/mount"

	"github.com/layerlab/layerlab/drivers"
)

func TestParseBind(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want string // Type|Name|Source|Destination|Mode|RW|Propagation|NoCopy
	}{
		{"/ctr", "volume|||/ctr||true||false"},
		{"/host/dir:/ctr", "bind||/host/dir|/ctr||true|rprivate|false"},
		{"/host//dir/:/ctr/:ro", "bind||/host/dir|/ctr|ro|false|rprivate|false"},
		{"/h:/c:rw,rshared", "bind||/h|/c|rw,rshared|true|rshared|false"},
		{"/h:/c:z", "bind||/h|/c|z|true|rprivate|false"},
		{"data:/c", "volume|data||/c||true||false"},
		{"data:/c:ro,nocopy", "volume|data||/c|ro,nocopy|false||true"},
	} {
		m, err := ParseBind(c.raw)
		if err != nil {
			t.Errorf("ParseBind(%q): %v", c.raw, err)
			continue
		}
		got := strings.Join([]string{string(m.Type), m.Name, m.Source, m.Destination, m.Mode,
			boolText(m.RW), string(m.Propagation), boolText(m.NoCopy)}, "|")
		if got != c.want {
			t.Errorf("ParseBind(%q) = %s, want %s", c.raw, got, c.want)
		}
	}
	for raw, want := range map[string]string{
		"":                "no destination",
		"rel":             "mount path must be absolute",
		"/h:rel":          "mount path must be absolute",
		"/h:/":            "destination can't be '/'",
		"/h:ro":           "a mode needs a source and a destination",
		"/h:/c:rx":        "invalid mode: rx",
		"/h:/c:ro,rw":     "invalid mode: ro,rw",
		"/h:/c:nocopy":    "nocopy applies to volumes",
		"vv:/c:rshared":   "a propagation applies to binds",
		"a/b:/c":          `"a/b" includes invalid characters`,
		"./rel:/c":        "use absolute path",
		"/a:/b:ro:extra":  "want /ctr, SRC:/ctr or SRC:/ctr:MODE",
		"x:/c":            "includes invalid characters", // one character is too short, as in dockerd
		"/h:/c:shared,rw": "",                            // valid
	} {
		_, err := ParseBind(raw)
		if want == "" {
			if err != nil {
				t.Errorf("ParseBind(%q): %v", raw, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseBind(%q): %v, want an invalid argument saying %q", raw, err, want)
		}
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	m, err := ParseMount(mount.Mount{Type: mount.TypeBind, Source: dir, Target: "/x", ReadOnly: true,
		BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}})
	if err != nil || m.Source != dir || m.RW || m.Propagation != mount.PropagationRSlave {
		t.Errorf("bind: %+v, %v", m, err)
	}
	m, err = ParseMount(mount.Mount{Type: mount.TypeVolume, Source: "vol", Target: "/v",
		VolumeOptions: &mount.VolumeOptions{NoCopy: true, Labels: map[string]string{"a": "b"}}})
	if err != nil || m.Name != "vol" || !m.NoCopy || m.Labels["a"] != "b" || !m.RW {
		t.Errorf("volume: %+v, %v", m, err)
	}
	m, err = ParseMount(mount.Mount{Type: mount.TypeTmpfs, Target: "/t",
		TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777}})
	if err != nil || strings.Join(m.Options, ",") != "size=1048576,mode=1777" {
		t.Errorf("tmpfs: %+v, %v", m, err)
	}
	m, err = ParseMount(mount.Mount{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{Mode: 0o755 | os.ModeSticky}})
	if err != nil || strings.Join(m.Options, ",") != "mode=1755" {
		t.Errorf("tmpfs with Go's sticky bit: %+v, %v", m, err)
	}
	for _, c := range []struct {
		m    mount.Mount
		want string
	}{
		{mount.Mount{Type: mount.TypeBind, Source: filepath.Join(dir, "no"), Target: "/x"}, "bind source path does not exist"},
		{mount.Mount{Type: mount.TypeBind, Source: "rel", Target: "/x"}, "mount path must be absolute"},
		{mount.Mount{Type: mount.TypeBind, Target: "/x"}, "field Source must not be empty"},
		{mount.Mount{Type: mount.TypeBind, Source: dir}, "field Target must not be empty"},
		{mount.Mount{Type: mount.TypeBind, Source: dir, Target: "/x", VolumeOptions: &mount.VolumeOptions{}}, "only bind options"},
		{mount.Mount{Type: mount.TypeBind, Source: dir, Target: "/x", BindOptions: &mount.BindOptions{Propagation: "sideways"}}, `bind-propagation "sideways"`},
		{mount.Mount{Type: mount.TypeTmpfs, Source: "x", Target: "/t"}, "field Source must not be specified"},
		{mount.Mount{Type: mount.TypeVolume, Source: "a/b", Target: "/t"}, "includes invalid characters"},
		{mount.Mount{Type: mount.TypeVolume, Target: "/t", VolumeOptions: &mount.VolumeOptions{Subpath: "x"}}, "volume-subpath is not supported"},
		{mount.Mount{Type: mount.TypeNamedPipe, Target: "/t"}, "mount type \"npipe\" is not supported"},
	} {
		if _, err := ParseMount(c.m); err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseMount(%+v): %v, want an invalid argument saying %q", c.m, err, c.want)
		}
	}
	if _, err := ParseMount(mount.Mount{Type: mount.TypeVolume, Target: "/t", VolumeOptions: &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: "nfs"}}}); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("a volume plugin: %v, want not found", err)
	}
}

func TestParseTmpfs(t *testing.T) {
	m, err := ParseTmpfs("/run/", "size=64m,exec,ro")
	if err != nil || m.Destination != "/run" || m.RW || strings.Join(m.Options, ",") != "noexec,nosuid,nodev,size=64m,exec" {
		t.Errorf("ParseTmpfs: %+v, %v", m, err)
	}
	if _, err := ParseTmpfs("run", ""); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("a relative --tmpfs: %v", err)
	}
}

// FuzzParseBind: no input panics; what parses has an absolute, clean
// destination other than "/", a bind has an absolute source, a volume a
// valid name or none, and every error is an invalid argument.
func FuzzParseBind(f *testing.F) {
	for _, s := range []string{"/c", "/h:/c", "/h:/c:ro", "v:/c:nocopy,ro", "/h:/c:rshared,rw,z", "a/b:/c", "::", "/h:/c:ro:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := ParseBind(raw)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("ParseBind(%q): %v is not an invalid argument", raw, err)
			}
			return
		}
		if !filepath.IsAbs(m.Destination) || filepath.Clean(m.Destination) != m.Destination || m.Destination == "/" {
			t.Fatalf("ParseBind(%q): destination %q", raw, m.Destination)
		}
		switch m.Type {
		case mount.TypeBind:
			if !filepath.IsAbs(m.Source) || m.Name != "" || m.NoCopy {
				t.Fatalf("ParseBind(%q): bind %+v", raw, m)
			}
		case mount.TypeVolume:
			if m.Name != "" && ValidName(m.Name) != nil || m.Source != "" || m.Propagation != "" {
				t.Fatalf("ParseBind(%q): volume %+v", raw, m)
			}
		default:
			t.Fatalf("ParseBind(%q): type %q", raw, m.Type)
		}
		if slices.Contains(strings.Split(m.Mode, ","), "ro") == m.RW {
			t.Fatalf("ParseBind(%q): mode %q but RW %v", raw, m.Mode, m.RW)
		}
	})
}
