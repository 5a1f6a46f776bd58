package layer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// BenchmarkApplyVsTar applies a 100 MiB layer of 10,000 files with Apply
// and with GNU `tar -x` (as root it keeps owners and modes, as Apply does)
// into fresh directories of the same loop-mounted ext4, alternating the
// two in every iteration so both see the same cache and device state,
// and reports both times and their ratio (target: apply/tar <= 1.3).
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

	ctx := context.Background()
	var applyTime, tarTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, t := filepath.Join(lfs.Dir, fmt.Sprintf("apply-%d", i)), filepath.Join(lfs.Dir, fmt.Sprintf("tar-%d", i))
		must(b, os.Mkdir(a, 0o755))
		must(b, os.Mkdir(t, 0o755))
		in, err := os.Open(tarPath)
		must(b, err)
		start := time.Now()
		if _, err := Apply(ctx, a, in); err != nil {
			b.Fatal(err)
		}
		applyTime += time.Since(start)
		in.Close()
		start = time.Now()
		if _, err := command.Run(ctx, "tar", "-x", "-f", tarPath, "-C", t); err != nil {
			b.Fatal(err)
		}
		tarTime += time.Since(start)
		b.StopTimer()
		must(b, os.RemoveAll(a))
		must(b, os.RemoveAll(t))
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(applyTime.Seconds()*1e3/n, "apply-ms/op")
	b.ReportMetric(tarTime.Seconds()*1e3/n, "tar-ms/op")
	b.ReportMetric(applyTime.Seconds()/tarTime.Seconds(), "apply/tar")
}
