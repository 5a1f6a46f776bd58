package main

import (
	"encoding/csv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerlab/layerlab/bench/result"
	"github.com/layerlab/layerlab/drivers/feature"
)

// benchAs runs a short real `layerlab bench` (vfs on a directory of this
// machine, snapshot-ops, 3 samples) under the hostname host, in a UTS
// namespace of its own, as a node of a cluster would, writing to out.
func benchAs(t *testing.T, host, root, out string) {
	t.Helper()
	cmd := exec.Command("unshare", "--uts", "sh", "-c", `hostname "$0" && exec "$@"`, host,
		os.Args[0], "bench", "--driver", "vfs", "--root", root, "--workloads", "snapshot-ops", "--n", "3", "--out", out)
	cmd.Env = append(os.Environ(), "LAYERLAB_TEST_CLI=1", "TMPDIR="+t.TempDir())
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bench as %s: %v\n%s", host, err, b)
	}
}

// TestReportMergeNodes merges two nodes' real bench results the way
// deploy/kubernetes/collect.sh leaves them (DEST/<node>/), and checks that
// every series carries its node in the merged results, the CSV files and
// the reports; then the refusals, each with exit code 2.
func TestReportMergeNodes(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "the bench mounts and sets a hostname in a UTS namespace")
	}
	dest, root := t.TempDir(), t.TempDir()
	for _, node := range []string{"node-a", "node-b"} {
		benchAs(t, node, root, filepath.Join(dest, node))
	}
	merged := filepath.Join(dest, "merged")
	cmd, _, _, out := cli(t, "report", "merge", dest, "--out", merged)
	if err := cmd.Run(); err != nil {
		t.Fatalf("report merge: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "2 machines: node-a, node-b") {
		t.Errorf("report merge said:\n%s", out)
	}
	r, err := result.Load(filepath.Join(merged, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Machines) != 2 || r.Machines[0].Hostname != "node-a" || r.Machines[1].Hostname != "node-b" {
		t.Fatalf("merged machines %+v", r.Machines)
	}
	perNode := map[string]int{}
	for _, s := range r.Series {
		host := r.Machines[s.Machine].Hostname
		perNode[host]++
		if !strings.Contains(s.Target, host+"/") {
			t.Errorf("series %s on %s: its target does not name the node", s.Key(), host)
		}
	}
	if perNode["node-a"] == 0 || perNode["node-a"] != perNode["node-b"] {
		t.Errorf("series per node %v, want the same non-zero count for both", perNode)
	}
	// The same renderers: every summary row names its node.
	f, err := os.Open(filepath.Join(merged, "summary.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, h := range rows[0] {
		if h == "machine" {
			col = i
		}
	}
	if col < 0 || len(rows) != len(r.Series)+1 {
		t.Fatalf("summary.csv: machine column %d, %d rows for %d series", col, len(rows)-1, len(r.Series))
	}
	for _, row := range rows[1:] {
		if row[col] != "node-a" && row[col] != "node-b" {
			t.Errorf("summary.csv row without its node: %v", row)
		}
	}
	for _, name := range []string{"index.html", "report.md"} {
		b, err := os.ReadFile(filepath.Join(merged, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"node-a/vfs/", "node-b/vfs/"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %s", name, want)
			}
		}
	}
	if charts, _ := filepath.Glob(filepath.Join(merged, "charts", "*.svg")); len(charts) == 0 {
		t.Errorf("no charts in %s", merged)
	}
	// Merging again into the same --out skips it as an input.
	if cmd, _, _, out := cli(t, "report", "merge", dest, "--out", merged); cmd.Run() != nil {
		t.Errorf("second merge into %s: %s", merged, out)
	}

	empty := t.TempDir()
	newer := t.TempDir()
	if err := os.WriteFile(filepath.Join(newer, "results.json"), []byte(`{"schema": 2, "machines": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "results.json")
	if err := os.WriteFile(garbage, []byte("<html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	nodeA := filepath.Join(dest, "node-a")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{empty, "--out", t.TempDir()}, "holds no results.json, nor do its subdirectories"},
		{[]string{nodeA, newer, "--out", t.TempDir()}, "results schema 2, this layerlab reads 1"},
		{[]string{nodeA, garbage, "--out", t.TempDir()}, "not a layerlab results file"},
		{[]string{nodeA, filepath.Join(nodeA, "results.json"), "--out", t.TempDir()}, "is given twice"},
		{[]string{nodeA, filepath.Join(dest, "node-b"), "--out", nodeA}, "which the merged results would overwrite"},
		{[]string{filepath.Join(dest, "nosuch"), "--out", t.TempDir()}, "no such file or directory"},
		{[]string{"--out", t.TempDir()}, "no inputs"},
		{[]string{nodeA}, "give the inputs and --out DIR"},
	} {
		cmd, _, _, out := cli(t, append([]string{"report", "merge"}, c.args...)...)
		if code := exitCodeOf(cmd.Run()); code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("report merge %v: exit %d, want 2 with %q in:\n%s", c.args, code, c.want, out)
		}
	}
	// The same run copied twice (collected twice) is refused, not counted twice.
	copied := filepath.Join(t.TempDir(), "copy")
	if err := os.CopyFS(copied, os.DirFS(nodeA)); err != nil {
		t.Fatal(err)
	}
	cmd, _, _, out = cli(t, "report", "merge", nodeA, copied, "--out", t.TempDir())
	if code := exitCodeOf(cmd.Run()); code != 2 || !strings.Contains(out.String(), "are the same run") {
		t.Errorf("merge of a run and its copy: exit %d:\n%s", code, out)
	}
}
