package aufs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// Without aufs in the kernel (every mainline kernel) the probe says so in
// the words users are pointed to, and New refuses with ErrUnavailable.
func TestProbeWithoutAufs(t *testing.T) {
	if kernel.HasFilesystem("aufs") {
		t.Skip("this kernel has aufs; the conformance suite covers it")
	}
	p := Probe(t.TempDir())
	if p.Available() {
		t.Fatal("aufs probed available on a kernel without it")
	}
	if p.Reason != ReasonNoAufs && !strings.Contains(p.Reason, "modprobe aufs") {
		t.Errorf("reason %q", p.Reason)
	}
	var listed bool
	for _, f := range p.Facts {
		listed = listed || (f.Name == "aufs in /proc/filesystems" && f.Value == "no")
	}
	if !listed {
		t.Errorf("facts %+v lack the /proc/filesystems finding", p.Facts)
	}
	_, err := New(context.Background(), t.TempDir(), nil)
	if !errors.Is(err, drivers.ErrUnavailable) || !strings.Contains(err.Error(), p.Reason) {
		t.Fatalf("New: %v", err)
	}
}

func TestNewChecksOptionsFirst(t *testing.T) {
	ctx := context.Background()
	for _, opts := range []drivers.Options{{"dio": "maybe"}, {"size": "1G"}} {
		if _, err := New(ctx, t.TempDir(), opts); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%v: %v", opts, err)
		}
	}
	if _, err := New(ctx, "relative/home", nil); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("relative home: %v", err)
	}
}

func TestRefuseBacking(t *testing.T) {
	for magic, want := range map[int64]string{
		magicAufs:           "aufs refuses an aufs branch",
		magicEcryptfs:       "ecryptfs",
		magicRamfs:          "ramfs",
		kernel.MagicBtrfs:   "btrfs",
		kernel.MagicOverlay: "overlayfs",
	} {
		if got := refuseBacking(magic); !strings.Contains(got, want) {
			t.Errorf("magic %#x: %q, want it to name %q", magic, got, want)
		}
	}
	for _, ok := range []int64{kernel.MagicExt4, kernel.MagicXFS, kernel.MagicTmpfs} {
		if got := refuseBacking(ok); got != "" {
			t.Errorf("magic %#x refused: %s", ok, got)
		}
	}
	if magicAufs != 0x61756673 {
		t.Errorf("AUFS_SUPER_MAGIC is %#x", magicAufs)
	}
}

func TestDirperm1ByVersion(t *testing.T) {
	for v, want := range map[string][2]bool{
		"5.4-20210906":                    {true, true},
		"4.x-rcN-20160111":                {true, true},
		"4.19.17+-20190211":               {true, true},
		"3.16-20140908":                   {false, false},
		"2.1-standalone.tree-35-20100920": {false, true},
		"":                                {false, false},
		"garbage":                         {false, false},
	} {
		ok, known := dirperm1ByVersion(v)
		if [2]bool{ok, known} != want {
			t.Errorf("%q: ok=%v known=%v, want %v", v, ok, known, want)
		}
	}
}

func TestBranchMaxFromConfig(t *testing.T) {
	for cfg, want := range map[string]int{
		"CONFIG_AUFS_FS=m\nCONFIG_AUFS_BRANCH_MAX_127=y\n# CONFIG_AUFS_BRANCH_MAX_511 is not set\n": 127,
		"# CONFIG_AUFS_BRANCH_MAX_127 is not set\nCONFIG_AUFS_BRANCH_MAX_511=y\n":                   511,
		"CONFIG_AUFS_BRANCH_MAX_32767=y": 32767,
		"CONFIG_OVERLAY_FS=y\n":          0,
	} {
		n, ok := branchMaxFromConfig(strings.NewReader(cfg))
		if n != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", cfg, n, ok, want)
		}
	}
	if n, _ := branchLimit(); n <= 0 {
		t.Errorf("branch limit %d", n)
	}
}

func TestFactoryCapabilities(t *testing.T) {
	f := Factory()
	c := f.Capabilities
	if f.Name != "aufs" || c.Strategy != drivers.CopyOnWrite || c.Granularity != drivers.GranularityFile || c.Quota {
		t.Fatalf("%s: %+v", f.Name, c)
	}
	if c.MaxDepth != 127 || c.QuotaNote != "aufs has no quota support" || len(c.Kernel) != 1 || c.Kernel[0] != "aufs (out of tree)" {
		t.Errorf("%+v", c)
	}
	if !contains(c.Notes, noteUnverified) {
		t.Errorf("notes %q lack %q", c.Notes, noteUnverified)
	}
}
