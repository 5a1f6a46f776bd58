package drivertest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/feature"
)

// checkQuota runs where the driver declares quota support: with a 10 MiB
// limit, 5 MiB fits and 20 MiB fails with EDQUOT or ENOSPC, while the same
// 20 MiB written outside the snapshot, on the same backing store, fits.
func checkQuota(t *testing.T, e *env) {
	caps := e.d.Capabilities()
	if !caps.Quota {
		if e.quota != "" {
			feature.Skip(t, e.quota, "%s declares no quota support on a store meant to provide %s: %s", e.factory.Name, e.quota, caps.QuotaNote)
		}
		t.Skipf("%s declares no quota support here (its choice, not a missing feature): %s", e.factory.Name, caps.QuotaNote)
	}
	ms, err := e.d.Prepare(e.ctx, "limited", "", drivers.WithSize(10*mib))
	if err != nil {
		t.Fatal(err)
	}
	dir := e.mount("limited", ms)
	if err := writeSynced(filepath.Join(dir, "fits"), 5*mib); err != nil {
		t.Fatalf("5 MiB under a 10 MiB limit: %v", err)
	}
	err = writeSynced(filepath.Join(dir, "too-big"), 20*mib)
	if !errors.Is(err, unix.EDQUOT) && !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("20 MiB under a 10 MiB limit: got %v, want EDQUOT or ENOSPC", err)
	}
	t.Logf("%s: 20 MiB under a 10 MiB limit failed with %v", e.factory.Name, err)
	if err := writeSynced(filepath.Join(e.home, "outside"), 20*mib); err != nil {
		t.Fatalf("20 MiB outside the limited snapshot: %v", err)
	}
	os.Remove(filepath.Join(e.home, "outside"))
}

func writeSynced(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := randomBytes(mib, 3)
	for i := 0; i < n/mib; i++ {
		if _, err := f.Write(chunk); err != nil {
			return err
		}
	}
	return f.Sync()
}
