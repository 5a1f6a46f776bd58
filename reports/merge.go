package reports

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/layerlab/layerlab/bench/result"
)

// Merge combines runs from several machines (or VMs) into one Results:
// Machines are appended and every Series.Machine and Target.Machine
// re-indexed into the merged list. A target ID (or floor) that occurs on
// more than one machine is prefixed with that machine's hostname
// ("vm1/overlay2/ext4", "floor:vm1/cp/ext4") on every machine that has it,
// so series stay apart and Series.Key stays unique. Inputs must have this
// layerlab's schema. The inputs are not modified.
func Merge(rs ...*result.Results) (*result.Results, error) {
	if len(rs) == 0 {
		return nil, errors.New("reports: merge needs at least one results file")
	}
	out := &result.Results{Schema: result.Schema}
	var offsets []int
	for i, r := range rs {
		if r == nil {
			return nil, fmt.Errorf("reports: merge input %d is empty (nil)", i+1)
		}
		if r.Schema != result.Schema {
			return nil, fmt.Errorf("reports: merge input %d has results schema %d, this layerlab reads %d: re-run the benchmark or use the layerlab version that wrote it", i+1, r.Schema, result.Schema)
		}
		if err := checkMachines(r); err != nil {
			return nil, fmt.Errorf("reports: merge input %d: %w", i+1, err)
		}
		offsets = append(offsets, len(out.Machines))
		out.Machines = append(out.Machines, r.Machines...)
	}
	labels := machineLabels(out.Machines)
	rename := collisions(rs, offsets, labels)
	name := func(machine int, id string) string {
		if n, ok := rename[machineName{machine, id}]; ok {
			return n
		}
		return id
	}

	var profiles []string
	seenProfile := map[string]bool{}
	for i, r := range rs {
		off := offsets[i]
		if r.Profile != "" && !seenProfile[r.Profile] {
			seenProfile[r.Profile] = true
			profiles = append(profiles, r.Profile)
		}
		if !r.Started.IsZero() && (out.Started.IsZero() || r.Started.Before(out.Started)) {
			out.Started = r.Started
		}
		if r.Finished.After(out.Finished) {
			out.Finished = r.Finished
		}
		out.Partial = out.Partial || r.Partial // a partial input makes the whole partial
		for _, t := range r.Targets {
			t.Machine += off
			t.ID = name(t.Machine, t.ID)
			t.DriverOptions = maps.Clone(t.DriverOptions)
			t.Notes = append([]string(nil), t.Notes...)
			out.Targets = append(out.Targets, t)
		}
		for _, s := range r.Series {
			s.Machine += off
			s.Target = name(s.Machine, s.Target)
			s.Samples = append([]float64(nil), s.Samples...)
			out.Series = append(out.Series, s)
		}
		// Notes of a one-machine run say which machine they are about once
		// merged; runs merged before already say so.
		for _, n := range r.Notes {
			if len(rs) > 1 && len(r.Machines) == 1 {
				n = "[" + labels[off] + "] " + n
			}
			out.Notes = append(out.Notes, n)
		}
	}
	out.Profile = strings.Join(profiles, "+")
	return out, nil
}

// checkMachines refuses a file whose machine indexes point nowhere: the
// merged indexes would then point at another machine's environment.
func checkMachines(r *result.Results) error {
	for _, t := range r.Targets {
		if t.Machine < 0 || t.Machine >= len(r.Machines) {
			return fmt.Errorf("target %q refers to machine %d but the file lists %d machine(s); the results file is damaged or hand-edited, fix its \"machines\" or \"machine\" fields", t.ID, t.Machine, len(r.Machines))
		}
	}
	for _, s := range r.Series {
		if s.Machine < 0 || s.Machine >= len(r.Machines) {
			return fmt.Errorf("series %s refers to machine %d but the file lists %d machine(s); the results file is damaged or hand-edited, fix its \"machines\" or \"machine\" fields", s.Key(), s.Machine, len(r.Machines))
		}
	}
	return nil
}

type machineName struct {
	machine int
	id      string
}

// collisions finds target IDs and floor names used on more than one
// machine and returns their new, host-prefixed names per machine.
func collisions(rs []*result.Results, offsets []int, labels []string) map[machineName]string {
	on := map[string]map[int]bool{}
	note := func(machine int, id string) {
		if on[id] == nil {
			on[id] = map[int]bool{}
		}
		on[id][machine] = true
	}
	for i, r := range rs {
		for _, t := range r.Targets {
			note(t.Machine+offsets[i], t.ID)
		}
		for _, s := range r.Series {
			note(s.Machine+offsets[i], s.Target)
		}
	}
	rename := map[machineName]string{}
	for id, machines := range on {
		if len(machines) < 2 {
			continue
		}
		for m := range machines {
			rename[machineName{m, id}] = prefixed(labels[m], id)
		}
	}
	return rename
}

// prefixed puts the host in front of an ID, after "floor:" for floors so
// they still read (and sort) as floors.
func prefixed(host, id string) string {
	if rest, ok := strings.CutPrefix(id, "floor:"); ok {
		return "floor:" + host + "/" + rest
	}
	return host + "/" + id
}
