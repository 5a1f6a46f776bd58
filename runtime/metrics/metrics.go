// Package metrics is layerlabd's Prometheus instrumentation (served on
// --metrics-addr): the storage drivers' operation latencies and the bytes
// applied into them, the containers' CPU, memory, block I/O and PIDs read
// from their cgroups at scrape time, and the Go runtime's and the
// process's own collectors. Everything is registered on a registry of the
// Metrics value, never on client_golang's global one, so two daemons (or
// tests) in one process do not share series.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of layerlabd's own.
const Namespace = "layerlab"

// Metrics holds one daemon's registry and the metrics it updates.
type Metrics struct {
	reg     *prometheus.Registry
	ops     *prometheus.HistogramVec // by driver and op
	errs    *prometheus.CounterVec   // by driver and op
	applied *prometheus.CounterVec   // bytes, by driver
	layers  *prometheus.CounterVec   // layers, by driver
}

// New makes a registry with the Go and process collectors and the driver
// metrics; the daemon adds its containers with Containers.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "driver", Name: "operation_duration_seconds",
			Help: "Latency of storage driver operations (prepare, view, commit, remove, mounts: the driver's calls; mount: mounting a container's rootfs).",
			// 100 µs to ~26 s: a vfs prepare copies the whole parent.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"driver", "op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "driver", Name: "operation_errors_total",
			Help: "Storage driver operations that returned an error.",
		}, []string{"driver", "op"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "driver", Name: "applied_bytes_total",
			Help: "Regular file bytes of image layers applied into the driver's snapshots.",
		}, []string{"driver"}),
		layers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "driver", Name: "applied_layers_total",
			Help: "Image layers applied into the driver's snapshots.",
		}, []string{"driver"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ops, m.errs, m.applied, m.layers,
	)
	return m
}

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Applied counts one layer of bytes regular file bytes applied into the
// driver name.
func (m *Metrics) Applied(name string, bytes int64) {
	m.applied.WithLabelValues(name).Add(float64(bytes))
	m.layers.WithLabelValues(name).Inc()
}

// Observe records that op on driver name took seconds and failed when
// err is not nil.
func (m *Metrics) Observe(name, op string, seconds float64, err error) {
	m.ops.WithLabelValues(name, op).Observe(seconds)
	if err != nil {
		m.errs.WithLabelValues(name, op).Inc()
	}
}
