// Package deploy holds no Go code: its tests check the Kubernetes
// manifests under deploy/ offline, with the API types of k8s.io/api and
// strict decoding (a misspelt or misplaced field is an error, as the API
// server's strict field validation makes it), and no cluster or kubectl.
package deploy

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/layerlab/layerlab/bench/result"
)

// object returns an empty value of the type the API serves for
// apiVersion and kind, or nil for one this test does not know yet.
func object(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}
	case "v1/Pod":
		return &corev1.Pod{}
	case "batch/v1/Job":
		return &batchv1.Job{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "node.k8s.io/v1/RuntimeClass":
		return &nodev1.RuntimeClass{}
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return &rbacv1.ClusterRole{}
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	}
	return nil
}

// documents splits a multi-document YAML stream, dropping empty ones.
func documents(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// decode strictly decodes every document of a YAML stream into its API
// type.
func decode(t *testing.T, name string, b []byte) []any {
	t.Helper()
	var objs []any
	for i, doc := range documents(b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s, document %d: %v", name, i+1, err)
		}
		obj := object(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Fatalf("%s, document %d: apiVersion %q kind %q is not known to this test; add its k8s.io/api type to object()", name, i+1, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s, document %d (%s): %v", name, i+1, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

// TestManifestsDecodeStrictly decodes every YAML file under deploy/.
func TestManifestsDecodeStrictly(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		objs := decode(t, path, b)
		if len(objs) == 0 {
			t.Errorf("%s holds no Kubernetes object", path)
		}
		n += len(objs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no manifests under deploy/")
	}
}

// makeImage is the image `make image` builds (IMAGE in the Makefile).
func makeImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^IMAGE\s*\?=\s*(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Makefile sets no IMAGE ?= ...")
	}
	return string(m[1])
}

// jobs runs deploy/kubernetes/jobs.sh (no kubectl: the nodes are given).
func jobs(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"kubernetes/jobs.sh"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return stdout.String() + stderr.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), 0
}

// volumeAt returns the volume mounted at path in c, and the mount.
func volumeAt(spec corev1.PodSpec, c corev1.Container, path string) (*corev1.Volume, *corev1.VolumeMount) {
	for i, m := range c.VolumeMounts {
		if m.MountPath == path {
			for j, v := range spec.Volumes {
				if v.Name == m.Name {
					return &spec.Volumes[j], &c.VolumeMounts[i]
				}
			}
		}
	}
	return nil, nil
}

// TestBenchJobs renders the Jobs for three nodes and checks what the
// bench needs of each: its node, privileged, the host's /dev, the results
// hostPath under which --out points, the image make image builds.
func TestBenchJobs(t *testing.T) {
	image := makeImage(t)
	nodes := []string{"node-a", "worker-1.example.com", "cp0"}
	out, code := jobs(t, append([]string{"-p", "standard", "-r", "run1", "-a", "--driver", "-a", "overlay2"}, nodes...)...)
	if code != 0 {
		t.Fatalf("jobs.sh: exit %d:\n%s", code, out)
	}
	objs := decode(t, "jobs.sh output", []byte(out))
	if len(objs) != len(nodes) {
		t.Fatalf("%d objects for %d nodes:\n%s", len(objs), len(nodes), out)
	}
	names := map[string]bool{}
	for i, o := range objs {
		job, ok := o.(*batchv1.Job)
		if !ok {
			t.Fatalf("object %d is a %T", i, o)
		}
		node := nodes[i]
		if errs := validation.IsDNS1123Label(job.Name); len(errs) > 0 || names[job.Name] {
			t.Errorf("job name %q: %v (or repeated)", job.Name, errs)
		}
		names[job.Name] = true
		if job.Namespace != "layerlab-bench" || *job.Spec.BackoffLimit != 0 {
			t.Errorf("%s: namespace %q, backoffLimit %d", job.Name, job.Namespace, *job.Spec.BackoffLimit)
		}
		spec := job.Spec.Template.Spec
		terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" ||
			terms[0].MatchFields[0].Operator != corev1.NodeSelectorOpIn || !slices.Equal(terms[0].MatchFields[0].Values, []string{node}) {
			t.Errorf("%s: not pinned to node %s: %+v", job.Name, node, terms)
		}
		if spec.RestartPolicy != corev1.RestartPolicyNever || !spec.HostNetwork {
			t.Errorf("%s: restartPolicy %s, hostNetwork %v (the report names the node by the hostname the bench sees)", job.Name, spec.RestartPolicy, spec.HostNetwork)
		}
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
			t.Errorf("%s: tolerations %+v, want one that tolerates every taint", job.Name, spec.Tolerations)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", job.Name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if c.Image != image {
			t.Errorf("%s: image %q, make image builds %q", job.Name, c.Image, image)
		}
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("%s: not privileged (loop devices, mounts)", job.Name)
		}
		if v, _ := volumeAt(spec, c, "/dev"); v == nil || v.HostPath == nil || v.HostPath.Path != "/dev" {
			t.Errorf("%s: the host's /dev is not mounted at /dev", job.Name)
		}
		results, m := volumeAt(spec, c, "/results")
		if results == nil || results.HostPath == nil || results.HostPath.Path != "/var/lib/layerlab/bench/run1" ||
			*results.HostPath.Type != corev1.HostPathDirectoryOrCreate || m.ReadOnly {
			t.Errorf("%s: /results is not the writable hostPath /var/lib/layerlab/bench/run1: %+v", job.Name, results)
		}
		if v, _ := volumeAt(spec, c, "/scratch"); v == nil || v.EmptyDir == nil {
			t.Errorf("%s: no scratch emptyDir at /scratch", job.Name)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if e := env["NODE_NAME"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("%s: NODE_NAME is not the downward API's spec.nodeName: %+v", job.Name, e)
		}
		if env["TMPDIR"].Value != "/scratch" {
			t.Errorf("%s: TMPDIR %q, want the scratch volume", job.Name, env["TMPDIR"].Value)
		}
		args := c.Args
		want := []string{"bench", "--profile", "standard", "--out", "/results/$(NODE_NAME)", "--driver", "overlay2"}
		if !slices.Equal(c.Command, []string{"/usr/local/bin/layerlab"}) || !slices.Equal(args, want) {
			t.Errorf("%s: runs %q %q, want /usr/local/bin/layerlab %q", job.Name, c.Command, args, want)
		}
	}

	// A bad node name or value is refused before any Job is printed.
	for _, bad := range [][]string{{"node-a", "Node_B"}, {"-r", "../etc", "node-a"}, {"-p", "quick profile", "n"}, {"-i", "img:1\nx: y", "n"}} {
		out, code := jobs(t, bad...)
		if code != 2 || strings.Contains(out, "kind: Job") {
			t.Errorf("jobs.sh %q: exit %d, want 2 and no Job:\n%s", bad, code, out)
		}
	}
	// Node names that would collide as Job names.
	if out, code := jobs(t, "a.b", "a-b"); code != 2 || !strings.Contains(out, "same Job name") {
		t.Errorf("jobs.sh a.b a-b: exit %d:\n%s", code, out)
	}
	// Defaults (a run named by the date, no extra args) and another image.
	out, code = jobs(t, "-i", "registry.example.com/layerlab/bench:v1", "n1")
	if code != 0 {
		t.Fatalf("jobs.sh -i: exit %d:\n%s", code, out)
	}
	job := decode(t, "jobs.sh -i output", []byte(out))[0].(*batchv1.Job)
	c := job.Spec.Template.Spec.Containers[0]
	if c.Image != "registry.example.com/layerlab/bench:v1" || !slices.Equal(c.Args, []string{"bench", "--profile", "quick", "--out", "/results/$(NODE_NAME)"}) ||
		!regexp.MustCompile(`^/var/lib/layerlab/bench/\d{8}-\d{6}$`).MatchString(job.Spec.Template.Spec.Volumes[1].HostPath.Path) {
		t.Errorf("jobs.sh -i n1: image %q, args %q, volumes %+v", c.Image, c.Args, job.Spec.Template.Spec.Volumes)
	}
}

// TestResultsCollector checks the DaemonSet collect.sh copies from: the
// image, a read-only mount of the directory the Jobs write under, and a
// command the image has.
func TestResultsCollector(t *testing.T) {
	b, err := os.ReadFile("kubernetes/results-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, "results-daemonset.yaml", b)
	ds, ok := objs[0].(*appsv1.DaemonSet)
	if len(objs) != 1 || !ok {
		t.Fatalf("want one DaemonSet, got %v", objs)
	}
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	if c.Image != makeImage(t) {
		t.Errorf("image %q, make image builds %q", c.Image, makeImage(t))
	}
	v, m := volumeAt(spec, c, "/results")
	if v == nil || v.HostPath == nil || v.HostPath.Path != "/var/lib/layerlab/bench" || !m.ReadOnly {
		t.Errorf("/results is not the read-only hostPath /var/lib/layerlab/bench: %+v %+v", v, m)
	}
	if !slices.Equal(c.Command, []string{"/usr/local/bin/sleep", "86400"}) {
		t.Errorf("command %q", c.Command)
	}
	if fmt.Sprint(ds.Spec.Selector.MatchLabels) != fmt.Sprint(ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the template's labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
}

// TestScripts runs shellcheck (make setup installs it) on the scripts.
func TestScripts(t *testing.T) {
	scripts, _ := filepath.Glob("kubernetes/*.sh")
	if len(scripts) == 0 {
		t.Fatal("no scripts in deploy/kubernetes")
	}
	if _, err := exec.LookPath("shellcheck"); err != nil {
		t.Fatal("shellcheck is not installed: run make setup (it installs it)")
	}
	if out, err := exec.Command("shellcheck", scripts...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}

// stubKubectl answers the kubectl calls collect.sh makes from a fake
// cluster: $FAKE/<node>/ is that node's filesystem, whose
// var/lib/layerlab/bench the collector pod "results-<node>" mounts at
// /results. It logs every call to $FAKE/calls.
const stubKubectl = `#!/usr/bin/env bash
set -euo pipefail
echo "$*" >>"$FAKE/calls"
[ "$1" = -n ] && shift 2
case "$1" in
  apply|delete|rollout) exit 0 ;;
  get)
    case "$2" in
      jobs) exit 0 ;;   # none active
      pods) for d in "$FAKE"/*/; do n=$(basename "$d"); echo "results-$n $n"; done ;;
    esac ;;
  exec) node=${2#results-}; shift 3; [ "$1" = test ] && [ "$2" = -f ] && test -f "$FAKE/$node/var/lib/layerlab/bench/${3#/results/}" ;;
  cp) src=${2#*:} pod=${2%%:*}; node=${pod#results-}; cp -r "$FAKE/$node/var/lib/layerlab/bench/${src#/results/}" "$3" ;;
  *) echo "stub kubectl: unexpected $*" >&2; exit 1 ;;
esac
`

// TestCollect runs collect.sh against a stub kubectl and the real
// layerlab: it copies each node's report of the run (and only that run)
// out of its collector pod, skips a node without one, and merges them.
func TestCollect(t *testing.T) {
	fake, bin, work := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "kubectl"), []byte(stubKubectl), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", filepath.Join(bin, "layerlab"), "./cmd/layerlab")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// node-a and node-b ran run1 (node-a also an older run0); node-c did not.
	for i, node := range []string{"node-a", "node-b", "node-c"} {
		for _, run := range []string{"run0", "run1"} {
			if node == "node-c" || (run == "run0" && node != "node-a") {
				continue
			}
			dir := filepath.Join(fake, node, "var/lib/layerlab/bench", run, node)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			r := &result.Results{Schema: result.Schema, Profile: "quick", Started: time.Date(2026, 12, 1, 10, i, 0, 0, time.UTC),
				Machines: []result.Environment{{Hostname: node}},
				Targets:  []result.Target{{ID: "vfs/ext4", Driver: "vfs", Backing: "ext4"}},
				Series:   []result.Series{{Workload: "snapshot-ops", Op: "prepare", Target: "vfs/ext4", Cache: "warm", Unit: "ns", Samples: []float64{1e6, 2e6, 3e6}}}}
			if err := r.Save(filepath.Join(dir, "results.json")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(fake, "node-c", "var/lib/layerlab/bench"), 0o755); err != nil {
		t.Fatal(err)
	}
	here, _ := os.Getwd()
	cmd := exec.Command("bash", filepath.Join(here, "kubernetes/collect.sh"), "run1")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "FAKE="+fake, "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("collect.sh: %v\n%s", err, out)
	}
	for _, want := range []string{"node-a -> ./results-run1/node-a", "node-b -> ./results-run1/node-b", "node-c has no results for run run1", "2 machines: node-a, node-b"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("collect.sh output lacks %q:\n%s", want, out)
		}
	}
	merged, err := result.Load(filepath.Join(work, "results-run1", "merged", "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(merged.Machines) != 2 || len(merged.Series) != 2 || merged.Series[1].Target != "node-b/vfs/ext4" {
		t.Errorf("merged %+v", merged)
	}
	calls, _ := os.ReadFile(filepath.Join(fake, "calls"))
	if !strings.Contains(string(calls), "delete daemonset layerlab-results") {
		t.Errorf("collect.sh did not delete the collector; calls:\n%s", calls)
	}
}
