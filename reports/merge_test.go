package reports

import (
	"strings"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
)

func TestMerge(t *testing.T) {
	t.Parallel()
	a, b := fixture(1, "vm-a"), fixture(2, "vm-b")
	// b also runs a target a lacks.
	b.Targets = append(b.Targets, result.Target{ID: "zfs/zfs", Driver: "zfs", Backing: "zfs"})
	b.Series = append(b.Series, result.Series{Workload: "snapshot-ops", Op: "prepare", Target: "zfs/zfs", Cache: "warm", Unit: "ns", Samples: []float64{1, 2}})
	aSeries, bSeries := len(a.Series), len(b.Series)

	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Machines) != 2 || m.Machines[1].Hostname != "vm-b" {
		t.Fatalf("machines %+v", m.Machines)
	}
	if len(m.Series) != aSeries+bSeries || len(m.Targets) != len(a.Targets)+len(b.Targets) {
		t.Fatalf("%d series, %d targets after merge", len(m.Series), len(m.Targets))
	}
	for i, s := range m.Series {
		want := 0
		if i >= aSeries {
			want = 1
		}
		if s.Machine != want {
			t.Fatalf("series %d (%s): machine %d, want %d", i, s.Key(), s.Machine, want)
		}
	}
	ids := map[string]int{}
	for _, tg := range m.Targets {
		ids[tg.ID] = tg.Machine
	}
	for id, machine := range map[string]int{"vm-a/overlay2/ext4": 0, "vm-b/overlay2/ext4": 1, "vm-b/aufs/xfs": 1, "zfs/zfs": 1} {
		if got, ok := ids[id]; !ok || got != machine {
			t.Errorf("target %s: machine %d (present %v), want %d; have %v", id, got, ok, machine, ids)
		}
	}
	// Series follow their target's new name; floors get the host after "floor:".
	keys := map[string]bool{}
	for _, s := range m.Series {
		if keys[s.Key()] {
			t.Errorf("duplicate key after merge: %s", s.Key())
		}
		keys[s.Key()] = true
		if s.Floor && !strings.HasPrefix(s.Target, "floor:vm-") {
			t.Errorf("floor %q not prefixed with its host", s.Target)
		}
		if !s.Floor && s.Target != "zfs/zfs" && !strings.HasPrefix(s.Target, []string{"vm-a/", "vm-b/"}[s.Machine]) {
			t.Errorf("series %s on machine %d not prefixed with its host", s.Key(), s.Machine)
		}
	}
	// Per-target floors still find their target under the new names.
	d := newDataset(m)
	for _, e := range d.entries {
		if e.Op == "cycle" && e.Target == "vm-b/overlay2/ext4" {
			if fs := d.floorsOf(e); len(fs) != 1 || fs[0].Target != "floor:vm-b/mount+fsync/overlay2/ext4" {
				t.Errorf("floors of merged %s: %v", e.Target, fs)
			}
		}
	}
	if m.Notes[0] != "[vm-a] "+a.Notes[0] {
		t.Errorf("note %q not attributed to its machine", m.Notes[0])
	}
	// Inputs are untouched.
	if a.Series[0].Target != "overlay2/ext4" || a.Targets[0].ID != "overlay2/ext4" || b.Series[0].Machine != 0 {
		t.Error("Merge modified its inputs")
	}

	// Merging a merged result with a third machine offsets indexes again;
	// identical hostnames are told apart by number. Only IDs that collide
	// as given are renamed: c's zfs/zfs meets m's, its aufs/xfs meets
	// nothing (m's is vm-a/aufs/xfs by now).
	c := fixture(3, "vm-a")
	c.Targets = append(c.Targets, result.Target{ID: "zfs/zfs", Driver: "zfs", Backing: "zfs"})
	m2, err := Merge(m, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Machines) != 3 || m2.Series[len(m2.Series)-1].Machine != 2 || m2.Targets[len(m2.Targets)-1].Machine != 2 {
		t.Errorf("second merge: %d machines, last series machine %d", len(m2.Machines), m2.Series[len(m2.Series)-1].Machine)
	}
	ids = map[string]int{}
	for _, tg := range m2.Targets {
		ids[tg.ID] = tg.Machine
	}
	for id, machine := range map[string]int{"vm-b/zfs/zfs": 1, "vm-a#3/zfs/zfs": 2, "aufs/xfs": 2, "vm-a/aufs/xfs": 0} {
		if got, ok := ids[id]; !ok || got != machine {
			t.Errorf("second merge: target %s: machine %d (present %v), want %d; have %v", id, got, ok, machine, ids)
		}
	}
	if err := Render(m2, t.TempDir()); err != nil {
		t.Errorf("rendering a merged result: %v", err)
	}

	// Mismatched schema and dangling machine indexes are refused.
	bad := fixture(4, "old")
	bad.Schema = result.Schema + 1
	if _, err := Merge(a, bad); err == nil || !strings.Contains(err.Error(), "schema") {
		t.Errorf("schema mismatch: err %v", err)
	}
	dangling := fixture(5, "x")
	dangling.Series[0].Machine = 3
	if _, err := Merge(a, dangling); err == nil || !strings.Contains(err.Error(), "machine 3") {
		t.Errorf("dangling machine index: err %v", err)
	}
	if _, err := Merge(); err == nil {
		t.Error("Merge() with no input succeeded")
	}
}
