package reports

import (
	"encoding/json"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
)

// FuzzMerge merges any two results files result.Parse accepts (as
// `layerlab report merge` does with the nodes' files): Merge either
// refuses them or keeps every series and target, each pointing at a
// machine of the merged list, and leaves no two series under one key when
// neither input had two.
func FuzzMerge(f *testing.F) {
	// Small seeds: a whole fixture makes each execution slow.
	for _, r := range []*result.Results{fixture(1, "node-a"), fixture(2, "node-b")} {
		r.Series = r.Series[:4]
		for i := range r.Series {
			r.Series[i].Samples = r.Series[i].Samples[:2]
		}
		b, err := json.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, b)
	}
	f.Add([]byte(`{"schema":1,"machines":[{"hostname":"a"}],"targets":[{"id":"vfs/ext4"}],"series":[{"target":"vfs/ext4","samples":[1]}]}`),
		[]byte(`{"schema":1,"machines":[{"hostname":"a"}],"series":[{"target":"a/vfs/ext4","machine":0}]}`))
	f.Add([]byte(`{"schema":1,"series":[{"machine":3}]}`), []byte(`{"schema":2}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ra, err := result.Parse(a)
		if err != nil {
			return
		}
		rb, err := result.Parse(b)
		if err != nil {
			return
		}
		m, err := Merge(ra, rb)
		if err != nil {
			return
		}
		if len(m.Series) != len(ra.Series)+len(rb.Series) || len(m.Targets) != len(ra.Targets)+len(rb.Targets) ||
			len(m.Machines) != len(ra.Machines)+len(rb.Machines) {
			t.Fatalf("merged %d series, %d targets, %d machines from %d+%d, %d+%d, %d+%d", len(m.Series), len(m.Targets), len(m.Machines),
				len(ra.Series), len(rb.Series), len(ra.Targets), len(rb.Targets), len(ra.Machines), len(rb.Machines))
		}
		for _, s := range m.Series {
			if s.Machine < 0 || s.Machine >= len(m.Machines) {
				t.Fatalf("series %s points at machine %d of %d", s.Key(), s.Machine, len(m.Machines))
			}
		}
		for _, tg := range m.Targets {
			if tg.Machine < 0 || tg.Machine >= len(m.Machines) {
				t.Fatalf("target %s points at machine %d of %d", tg.ID, tg.Machine, len(m.Machines))
			}
		}
		if unique(ra) && unique(rb) && !unique(m) {
			t.Fatalf("merge made two series share a key")
		}
	})
}

func unique(r *result.Results) bool {
	seen := map[string]bool{}
	for _, s := range r.Series {
		if seen[s.Key()] {
			return false
		}
		seen[s.Key()] = true
	}
	return true
}
