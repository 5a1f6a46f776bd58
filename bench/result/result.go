// Package result is the schema of a layerlab benchmark run: what
// `layerlab bench` writes to results.json and what reports render, merge
// and compare. It holds types only, so reports depend on the schema and
// not on the harness.
package result

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/layerlab/layerlab/bench/stats"
)

// Schema is the version of this format.
const Schema = 1

// Results is one run of the harness, or several merged.
type Results struct {
	Schema   int       `json:"schema"`
	Profile  string    `json:"profile"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Machines holds the environment of every machine whose series are in
	// here (one unless merged); Series.Machine indexes it.
	Machines []Environment `json:"machines"`
	Targets  []Target      `json:"targets"`
	Series   []Series      `json:"series"`
	// Notes are things the reader must know (a driver skipped and why).
	Notes []string `json:"notes,omitempty"`
	// Partial is set when the run was interrupted (Ctrl-C, SIGTERM): the
	// series are those taken until then, and a note says where it stopped.
	Partial bool `json:"partial,omitempty"`
}

// Environment is what the results depend on besides the driver.
type Environment struct {
	Hostname        string    `json:"hostname"`
	Kernel          string    `json:"kernel"`
	CPU             string    `json:"cpu"`
	CPUs            int       `json:"cpus"`
	MemoryBytes     int64     `json:"memory_bytes"`
	GoVersion       string    `json:"go_version"`
	LayerlabVersion string    `json:"layerlab_version"`
	Commit          string    `json:"commit"`
	Date            time.Time `json:"date"`
	// OverheadNs is the harness's own cost per timed sample (taking two
	// timestamps and recording), measured in the same run.
	OverheadNs float64 `json:"overhead_ns"`
}

// Target is one driver on one backing store.
type Target struct {
	ID            string            `json:"id"` // "overlay2/ext4"
	Driver        string            `json:"driver"`
	Backing       string            `json:"backing"`        // filesystem type: ext4, xfs, btrfs, zfs
	Device        string            `json:"device"`         // /dev/loop3, a disk, a pool
	Loop          bool              `json:"loop"`           // backed by a loop device on a file
	DirectIO      bool              `json:"direct_io"`      // the loop device bypasses the host page cache
	MountOptions  string            `json:"mount_options"`  // of the backing filesystem
	DriverOptions map[string]string `json:"driver_options"` // as given to the driver
	Strategy      string            `json:"strategy"`
	Granularity   string            `json:"granularity"`
	Notes         []string          `json:"notes,omitempty"`
	Machine       int               `json:"machine"`
}

// Series is the samples of one measurement at one parameter value.
type Series struct {
	Workload string `json:"workload"` // snapshot-ops, depth, copy-up, small-files, write, unpack, density, write-amp, concurrency
	Op       string `json:"op"`       // prepare, mount, append, seq-write, ...
	Target   string `json:"target"`   // Target.ID, or "floor:<what>/<backing>" for floors
	Floor    bool   `json:"floor,omitempty"`
	// Param names the swept variable ("depth", "size", "files",
	// "containers") and Value its value in this series; empty and 0 when
	// nothing is swept.
	Param string  `json:"param,omitempty"`
	Value float64 `json:"value,omitempty"`
	Cache string  `json:"cache"` // "warm" or "cold" (caches dropped before each sample)
	Unit  string  `json:"unit"`  // ns, bytes, bytes/s, ops/s, ratio
	// Samples are every raw measurement, in the order taken.
	Samples []float64     `json:"samples"`
	Summary stats.Summary `json:"summary"`
	Machine int           `json:"machine"`
}

// Key identifies a series across runs, for compare and merge.
func (s Series) Key() string {
	return fmt.Sprintf("%s|%s|%s|%s=%g|%s", s.Workload, s.Op, s.Target, s.Param, s.Value, s.Cache)
}

// Load reads a results.json.
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Parse decodes the content of a results.json, refusing another schema.
func Parse(b []byte) (*Results, error) {
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("not a layerlab results file: %w", err)
	}
	if r.Schema != Schema {
		return nil, fmt.Errorf("results schema %d, this layerlab reads %d", r.Schema, Schema)
	}
	return &r, nil
}

// Save writes r as indented JSON.
func (r *Results) Save(path string) error {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
