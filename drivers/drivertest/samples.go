package drivertest

import (
	"sort"
	"time"
)

// Samples records per-iteration times so the drivers' Go benchmarks can
// report medians next to Go's mean: the machine is shared, and means chase
// outliers.
type Samples []time.Duration

// Median returns the median sample.
func (s Samples) Median() time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := append(Samples(nil), s...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}
