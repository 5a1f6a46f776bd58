package aufs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

const page = 4096

// isFlag reports the options drivers/mount turns into mount(2) flags
// rather than data; everything else is joined with commas into the data
// string.
func isFlag(o string) bool { return o == "ro" || o == "rw" || o == "remount" }

func split(m drivers.Mount) (flags map[string]bool, data string) {
	flags = map[string]bool{}
	var d []string
	for _, o := range m.Options {
		if isFlag(o) {
			flags[o] = true
			continue
		}
		d = append(d, o)
	}
	return flags, strings.Join(d, ",")
}

// branchesOf replays mounts the way aufs applies them and returns the
// resulting branch list, checking each call's shape on the way.
func branchesOf(t *testing.T, ms []drivers.Mount, readOnly bool, pageSize int) []string {
	t.Helper()
	var got []string
	for i, m := range ms {
		if m.Type != "aufs" || m.Source != "none" {
			t.Fatalf("mount %d is %s from %s, want aufs from none", i, m.Type, m.Source)
		}
		flags, data := split(m)
		if len(data) >= pageSize {
			t.Fatalf("mount %d carries %d bytes of data, a page is %d", i, len(data), pageSize)
		}
		if flags["ro"] != readOnly {
			t.Fatalf("mount %d: ro=%v, want %v (%q)", i, flags["ro"], readOnly, m.Options)
		}
		if flags["remount"] != (i > 0) {
			t.Fatalf("mount %d: remount=%v (%q)", i, flags["remount"], m.Options)
		}
		for _, o := range strings.Split(data, ",") {
			switch {
			case i == 0 && strings.HasPrefix(o, "br:"):
				got = append(got, strings.Split(strings.TrimPrefix(o, "br:"), ":")...)
			case i > 0 && strings.HasPrefix(o, "append:"):
				got = append(got, strings.TrimPrefix(o, "append:"))
			case i == 0 && (strings.HasPrefix(o, "xino=") || o == "dirperm1" || o == "dio"):
			default:
				t.Fatalf("mount %d: unexpected option %q", i, o)
			}
		}
	}
	return got
}

func chain(n int, dir string) []string {
	ro := make([]string, n)
	for i := range ro {
		ro[i] = fmt.Sprintf("%s/l/%d", dir, n-i) // nearest parent first
	}
	return ro
}

func TestBranchMountsChains(t *testing.T) {
	f := features{xino: "/dev/shm/aufs.0123abcd.9999.xino", dirperm1: true}
	home := "/var/lib/layerlab/aufs"
	for _, n := range []int{1, 2, 127, 128, 500} {
		for _, active := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d-branches-active-%v", n, active), func(t *testing.T) {
				var rw string
				ro := chain(n, home)
				want := make([]string, 0, n)
				if active {
					rw, ro = home+"/l/top", ro[:n-1]
					want = append(want, rw+"=rw")
				}
				for _, d := range ro {
					want = append(want, d+"=ro+wh")
				}
				ms, err := branchMounts(rw, ro, page, f)
				if err != nil {
					t.Fatal(err)
				}
				got := branchesOf(t, ms, !active, page)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("branches in aufs order:\n got %q\nwant %q", got, want)
				}
				if !contains(ms[0].Options, "xino="+f.xino) || !contains(ms[0].Options, "dirperm1") || contains(ms[0].Options, "dio") {
					t.Errorf("first mount options %q", ms[0].Options)
				}
				// Each remount adds only what the previous page left out.
				if len(ms) > 1 {
					_, d := split(ms[0])
					if next := ":" + want[len(strings.Split(d[:strings.IndexByte(d, ',')], ":"))]; len(d)+len(next) <= page-1 {
						t.Errorf("the first mount stopped at %d bytes with room for %q", len(d), next)
					}
				}
			})
		}
	}
}

// 500 branches with 34-byte paths need remounts; the count follows from
// the page size.
func TestBranchMountsRemountCount(t *testing.T) {
	ms, err := branchMounts("/var/lib/layerlab/aufs/l/1000", chain(500, "/var/lib/layerlab/aufs"), page, features{xino: "/dev/shm/x.xino"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 4 {
		t.Fatalf("500 branches of ~40 bytes in %d mounts; a page holds about 100", len(ms))
	}
	for _, m := range ms[1:] {
		if m.Options[0] != "remount" {
			t.Errorf("append mount %q does not lead with remount", m.Options)
		}
	}
}

// Small pages and long paths force one branch per remount and check the
// edges of the budget.
func TestBranchMountsTightPage(t *testing.T) {
	long := "/" + strings.Repeat("p", 60)
	ro := chain(20, long)
	for _, pageSize := range []int{256, 97, 90} {
		ms, err := branchMounts(long+"/rw", ro, pageSize, features{dio: true})
		if err != nil {
			t.Fatalf("page %d: %v", pageSize, err)
		}
		got := branchesOf(t, ms, false, pageSize)
		if len(got) != 21 || got[0] != long+"/rw=rw" || got[20] != ro[19]+"=ro+wh" {
			t.Fatalf("page %d: %q", pageSize, got)
		}
		if !contains(ms[0].Options, "dio") {
			t.Errorf("page %d: dio asked for but missing: %q", pageSize, ms[0].Options)
		}
	}
	// "append:" and a 72-byte branch make 79 bytes, more than a 76-byte page
	// holds, while "br:" and the first branch make 75 and fit.
	if _, err := branchMounts("", ro, 76, features{}); !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "shorter home") {
		t.Fatalf("branch longer than a page: %v", err)
	}
	if _, err := branchMounts("", ro[:1], 76, features{}); err != nil {
		t.Fatalf("one branch that fits the first mount: %v", err)
	}
}

func TestBranchMountsRefusesBadPaths(t *testing.T) {
	for _, dir := range []string{"/a,b/l/1", "/a:b/l/1", "/a=b/l/1"} {
		if _, err := branchMounts("", []string{dir, "/ok/l/2"}, page, features{}); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%s: %v", dir, err)
		}
	}
	if _, err := branchMounts("", nil, page, features{}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("no branches: %v", err)
	}
}

func TestXinoPathPerHomeAndSnapshot(t *testing.T) {
	a, b, c := xinoPath("/h1", "7"), xinoPath("/h2", "7"), xinoPath("/h1", "8")
	if a == b || a == c || !strings.HasPrefix(a, xinoDir+"/aufs.") || !strings.HasSuffix(a, ".7.xino") {
		t.Fatalf("%s %s %s", a, b, c)
	}
	if strings.ContainsAny(a, ",:") {
		t.Fatalf("%s cannot be an aufs option", a)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
