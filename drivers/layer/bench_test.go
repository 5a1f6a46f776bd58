package layer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// BenchmarkApplyVsTar applies a 100 MiB layer of 10,000 files with Apply
// (as a caller that learns the DiffID, and as one that names the expected
// DiffID, which Apply checks before writing) and with GNU `tar -x` (as
// root it keeps owners and modes, as Apply does) into fresh directories of
// the same loop-mounted ext4, alternating the three in every iteration so
// all see the same cache and device state, and reports the times and
// ratios (target: apply/tar <= 1.3).
//
//	go test ./drivers/layer/ -run '^$' -bench ApplyVsTar -benchtime 5x
func BenchmarkApplyVsTar(b *testing.B) {
	lfs := loopfs.ForTest(b, "ext4", 2<<30)
	tarPath := filepath.Join(lfs.Dir, "layer.tar")
	f, err := os.Create(tarPath)
	must(b, err)
	must(b, Generate(f, 9, Spec{Files: 10000, FileSize: 10 << 10, Dirs: 1000, Symlinks: 100, Hardlinks: 100}))
	must(b, f.Close())
	fi, err := os.Stat(tarPath)
	must(b, err)
	b.SetBytes(fi.Size())
	data, err := os.ReadFile(tarPath)
	must(b, err)
	diffID := digest.FromBytes(data)

	ctx := context.Background()
	var applyTime, verifyTime, tarTime time.Duration
	apply := func(dir string, opts ...Option) time.Duration {
		in, err := os.Open(tarPath)
		must(b, err)
		defer in.Close()
		start := time.Now()
		if _, err := Apply(ctx, dir, in, opts...); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, v, t := filepath.Join(lfs.Dir, fmt.Sprintf("apply-%d", i)), filepath.Join(lfs.Dir, fmt.Sprintf("verify-%d", i)), filepath.Join(lfs.Dir, fmt.Sprintf("tar-%d", i))
		for _, d := range []string{a, v, t} {
			must(b, os.Mkdir(d, 0o755))
		}
		applyTime += apply(a)
		verifyTime += apply(v, WithDiffID(diffID))
		start := time.Now()
		if _, err := command.Run(ctx, "tar", "-x", "-f", tarPath, "-C", t); err != nil {
			b.Fatal(err)
		}
		tarTime += time.Since(start)
		b.StopTimer()
		for _, d := range []string{a, v, t} {
			must(b, os.RemoveAll(d))
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(applyTime.Seconds()*1e3/n, "apply-ms/op")
	b.ReportMetric(tarTime.Seconds()*1e3/n, "tar-ms/op")
	b.ReportMetric(verifyTime.Seconds()*1e3/n, "apply-diffid-ms/op")
	b.ReportMetric(applyTime.Seconds()/tarTime.Seconds(), "apply/tar")
	b.ReportMetric(verifyTime.Seconds()/tarTime.Seconds(), "apply-diffid/tar")
}
