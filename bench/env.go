package bench

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// environment captures the machine a run happens on.
func environment(version, commit string) result.Environment {
	host, _ := os.Hostname()
	return result.Environment{
		Hostname:        host,
		Kernel:          kernel.Release(),
		CPU:             cpuModel(),
		CPUs:            runtime.NumCPU(),
		MemoryBytes:     memTotal(),
		GoVersion:       runtime.Version(),
		LayerlabVersion: version,
		Commit:          commit,
		Date:            time.Now().UTC(),
		OverheadNs:      overhead(),
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// overhead measures what recording one sample costs the harness: two
// clock reads, a subtraction and an append, the median of many batches.
func overhead() float64 {
	const batch = 10000
	var per []float64
	for b := 0; b < 21; b++ {
		samples := make([]float64, 0, batch)
		start := time.Now()
		for i := 0; i < batch; i++ {
			t0 := time.Now()
			samples = append(samples, float64(time.Since(t0)))
		}
		per = append(per, float64(time.Since(start))/batch)
		_ = samples
	}
	return median(per)
}
