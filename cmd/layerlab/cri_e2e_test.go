package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criPod runs a pod through containerd's CRI plugin as kubelet does, over
// the CRI gRPC API: a host-network sandbox from the local sandbox image, a
// busybox container in it whose output is read from its CRI log, then all
// stopped and removed; the snapshots both used leave layerlab's store.
func criPod(t *testing.T, e proxyEnv) {
	c := e.c
	c.ctr(t, "-n", "k8s.io", "images", "import", "--snapshotter", "layerlab-overlay2", e.archive)
	sn := e.serves["overlay2"].client(t)
	before := backend(t, sn)

	conn, err := grpc.NewClient("unix://"+c.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt, img := cri.NewRuntimeServiceClient(conn), cri.NewImageServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := rt.Version(ctx, &cri.VersionRequest{}); err != nil {
		t.Fatalf("CRI Version: %v", err)
	}
	st, err := img.ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: busyboxRef}})
	if err != nil || st.Image == nil {
		t.Fatalf("CRI does not see %s: %v %v", busyboxRef, st, err)
	}

	logDir := filepath.Join(c.dir, "pods", "e2e")
	sandbox := &cri.PodSandboxConfig{
		Metadata: &cri.PodSandboxMetadata{Name: "e2e", Uid: "e2e-uid", Namespace: "default"},
		// No Hostname: a host-network pod shares the host's UTS
		// namespace, where runc refuses to set one.
		LogDirectory: logDir,
		Linux: &cri.LinuxPodSandboxConfig{
			CgroupParent:    c.cgroup,
			SecurityContext: &cri.LinuxSandboxSecurityContext{NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE}},
		},
	}
	pod, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: sandbox})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v", err)
	}
	created, err := rt.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "hello"},
			Image:    &cri.ImageSpec{Image: busyboxRef},
			Command:  []string{"sh", "-c", "echo hello from $(awk '$2==\"/\"{print $3}' /proc/mounts)"},
			LogPath:  "hello.log",
		},
		SandboxConfig: sandbox,
	})
	if err != nil {
		t.Fatalf("CreateContainer: %v", err)
	}
	id := created.ContainerId
	// While it exists, its rootfs is an active snapshot of layerlab's.
	active := 0
	for name, i := range backend(t, sn) {
		if _, old := before[name]; !old && strings.HasPrefix(name, "k8s.io/") && i.Kind == snapshots.KindActive {
			active++
		}
	}
	if active != 2 { // the sandbox's and the container's
		t.Errorf("%d new active snapshots in layerlab's store during the pod, want 2", active)
	}
	if _, err := rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	waitUntil(t, 20*time.Second, "container exited", func() bool {
		s, err := rt.ContainerStatus(ctx, &cri.ContainerStatusRequest{ContainerId: id})
		return err == nil && s.Status.State == cri.ContainerState_CONTAINER_EXITED
	})
	logb, err := os.ReadFile(filepath.Join(logDir, "hello.log"))
	if err != nil || !strings.Contains(string(logb), " stdout F hello from overlay") {
		t.Errorf("CRI log: %q %v, want the container's line on an overlay root", logb, err)
	}
	if _, err := rt.StopContainer(ctx, &cri.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Errorf("StopContainer: %v", err)
	}
	if _, err := rt.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Errorf("RemoveContainer: %v", err)
	}
	if _, err := rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Errorf("StopPodSandbox: %v", err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Errorf("RemovePodSandbox: %v", err)
	}
	// containerd's GC removes the snapshots asynchronously: wait, bounded.
	waitUntil(t, 20*time.Second, "the pod's snapshots gone from layerlab's store", func() bool {
		for name, i := range backend(t, sn) {
			if _, old := before[name]; !old && i.Kind != snapshots.KindCommitted {
				return false
			}
		}
		return true
	})
}
