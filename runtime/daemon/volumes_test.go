package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/volume"

	"github.com/layerlab/layerlab/drivers"
	drvmount "github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/vfs"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/events"
	"github.com/layerlab/layerlab/runtime/volumes"
)

func openVolumeDaemon(t *testing.T, root string) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the daemon mounts volumes: run as root")
	}
	d, err := New(context.Background(), Config{Registry: drivers.NewRegistry(vfs.Factory()), DataRoot: root,
		ExecRoot: filepath.Join(root, "exec"), DefaultDriver: "vfs", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// nextEvents reads n events from sub as "type action id".
func nextEvents(t *testing.T, sub *events.Subscription, n int) []string {
	t.Helper()
	var out []string
	for range n {
		select {
		case m := <-sub.C():
			out = append(out, string(m.Type)+" "+string(m.Action)+" "+m.Actor.ID)
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %v, want %d", out, n)
		}
	}
	return out
}

// TestVolumeStore drives the daemon's volume calls: create (idempotent,
// refusals), list filters, in-use refusal, a run's mounts with the copy
// of the image's content into a new volume and a driver-backed volume
// mounted only meanwhile, their events, disk usage, prune, and the
// recovery of a volume left mounted by a daemon that stopped.
func TestVolumeStore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	d := openVolumeDaemon(t, root)
	defer func() { d.Close() }()
	_, sub := d.events.Subscribe(time.Time{}, events.NewFilter(filters.NewArgs(filters.Arg("type", "volume"))))
	defer sub.Close()

	v, err := d.CreateVolume(ctx, volume.CreateOptions{Name: "v1", Labels: map[string]string{"team": "a"}})
	if err != nil || v.Mountpoint != filepath.Join(root, "volumes/v1/_data") || v.Driver != "local" {
		t.Fatalf("create v1: %+v, %v", v, err)
	}
	if _, err := d.CreateVolume(ctx, volume.CreateOptions{Name: "v1"}); err != nil {
		t.Fatalf("create v1 again: %v", err)
	}
	if _, err := d.CreateVolume(ctx, volume.CreateOptions{Name: "onvfs", DriverOpts: map[string]string{"driver": "vfs"}}); err != nil {
		t.Fatalf("create a volume on vfs: %v", err)
	}
	for _, c := range []struct {
		o    volume.CreateOptions
		want error
		says string
	}{
		{volume.CreateOptions{Name: "x", Driver: "nfs"}, drivers.ErrNotFound, `plugin "nfs" not found`},
		{volume.CreateOptions{Name: "bad/name"}, drivers.ErrInvalidArgument, "includes invalid characters"},
		{volume.CreateOptions{Name: "xx", DriverOpts: map[string]string{"o": "bind"}}, drivers.ErrInvalidArgument, `volume option "o" is not supported`},
		{volume.CreateOptions{Name: "xx", DriverOpts: map[string]string{"size": "1M"}}, drivers.ErrInvalidArgument, "size= needs driver=NAME"},
		{volume.CreateOptions{Name: "xx", DriverOpts: map[string]string{"driver": "vfs", "size": "1M"}}, drivers.ErrInvalidArgument, "drivers with a quota among the enabled ones: none"},
		{volume.CreateOptions{Name: "xx", DriverOpts: map[string]string{"driver": "btrfs"}}, drivers.ErrInvalidArgument, "not enabled (enabled: vfs)"},
	} {
		if _, err := d.CreateVolume(ctx, c.o); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("create %+v: %v, want %v saying %q", c.o, err, c.want, c.says)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "volumes/xx")); !os.IsNotExist(err) {
		t.Errorf("a refused create left its directory: %v", err)
	}

	// A run of a container with both volumes.
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "data/sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "data/sub/f"), []byte("image"), 0o640); err != nil {
		t.Fatal(err)
	}
	rec := containers.Record{ID: "c1", HostConfig: &container.HostConfig{Tmpfs: map[string]string{"/run": "size=1m"}}, Mounts: []volumes.MountPoint{
		{MountPoint: container.MountPoint{Type: mount.TypeVolume, Name: "v1", Destination: "/data", RW: true, Driver: "local"}},
		{MountPoint: container.MountPoint{Type: mount.TypeVolume, Name: "onvfs", Destination: "/data/sub/deeper", Driver: "local"}},
	}}
	for _, m := range rec.Mounts {
		d.vols.Ref(m.Name, rec.ID)
	}
	specMounts, err := d.mountVolumes(ctx, rec, rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "volumes/v1/_data/sub/f")); err != nil || string(b) != "image" {
		t.Errorf("the image's /data copied into v1: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "volumes/v1/_data/sub")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("copied directory's mode: %v, %v", fi, err)
	}
	onvfs := filepath.Join(root, "volumes/onvfs/_data")
	t.Cleanup(func() { _ = drvmount.UnmountAll(onvfs) })
	if m, err := drvmount.Mounted(onvfs); err != nil || !m {
		t.Errorf("the vfs-backed volume is not mounted while its container runs: %v", err)
	}
	got := map[string]string{}
	for _, m := range specMounts {
		got[m.Destination] = m.Type + " " + m.Source + " " + strings.Join(m.Options, ",")
	}
	want := map[string]string{
		"/data":            "bind " + filepath.Join(root, "volumes/v1/_data") + " rbind,rprivate",
		"/data/sub/deeper": "bind " + onvfs + " rbind,rprivate,ro",
		"/run":             "tmpfs tmpfs noexec,nosuid,nodev,size=1m",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("spec mount %s: %q, want %q", k, got[k], w)
		}
	}
	if err := d.RemoveVolume(ctx, "v1", true); !errors.Is(err, volumes.ErrInUse) || !strings.Contains(err.Error(), "remove v1: volume is in use - [c1]") {
		t.Errorf("remove of an in-use volume: %v", err)
	}
	du, err := d.vols.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range du {
		if v.Name == "v1" && (v.UsageData.RefCount != 1 || v.UsageData.Size < 5) {
			t.Errorf("v1's usage: %+v", v.UsageData)
		}
	}
	if err := d.unmountVolumes(rec); err != nil {
		t.Fatal(err)
	}
	if m, _ := drvmount.Mounted(onvfs); m {
		t.Errorf("the vfs-backed volume is still mounted after its container ended")
	}
	list, err := d.ListVolumes(ctx, filters.NewArgs(filters.Arg("label", "team=a"), filters.Arg("dangling", "false")))
	if err != nil || len(list.Volumes) != 1 || list.Volumes[0].Name != "v1" {
		t.Errorf("list label=team=a dangling=false: %+v, %v", list, err)
	}
	if err := releaseAll(d, rec); err != nil {
		t.Fatal(err)
	}
	anon, _, err := d.createVolume(ctx, volume.CreateOptions{}, true, "")
	if err != nil || len(anon.Name) != 64 {
		t.Fatalf("anonymous volume: %+v, %v", anon, err)
	}
	rep, err := d.PruneVolumes(ctx, filters.NewArgs(), true)
	if err != nil || len(rep.VolumesDeleted) != 1 || rep.VolumesDeleted[0] != anon.Name {
		t.Errorf("prune of anonymous volumes: %+v, %v", rep, err)
	}
	rep, err = d.PruneVolumes(ctx, filters.NewArgs(filters.Arg("label", "team=a")), false)
	if err != nil || len(rep.VolumesDeleted) != 1 || rep.VolumesDeleted[0] != "v1" || rep.SpaceReclaimed == 0 {
		t.Errorf("prune label=team=a: %+v, %v", rep, err)
	}
	got2 := nextEvents(t, sub, 9)
	wantEvents := []string{"volume create v1", "volume create onvfs", "volume mount v1", "volume mount onvfs",
		"volume unmount v1", "volume unmount onvfs", "volume create " + anon.Name, "volume destroy " + anon.Name, "volume destroy v1"}
	if strings.Join(got2, "\n") != strings.Join(wantEvents, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got2, "\n"), strings.Join(wantEvents, "\n"))
	}

	// A daemon that stops with a driver-backed volume mounted: the next
	// one unmounts it at start.
	if _, err := d.vols.Mount(ctx, "onvfs"); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openVolumeDaemon(t, root)
	if m, _ := drvmount.Mounted(onvfs); m {
		t.Errorf("the volume a stopped daemon left mounted is still mounted after the next start")
	}
	if err := d.RemoveVolume(ctx, "onvfs", false); err != nil {
		t.Errorf("remove onvfs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "volumes/onvfs")); !os.IsNotExist(err) {
		t.Errorf("onvfs's directory after remove: %v", err)
	}
}

// releaseAll is a container's removal as far as its volumes go.
func releaseAll(d *Daemon, r containers.Record) error {
	return d.releaseVolumes(context.Background(), r, false)
}

// TestParseMounts: -v and --mount over the image's VOLUMEs by
// destination, --tmpfs taking an image VOLUME's place, duplicates and an
// unknown --volumes-from refused.
func TestParseMounts(t *testing.T) {
	d := openVolumeDaemon(t, t.TempDir())
	defer d.Close()
	hc := &container.HostConfig{Binds: []string{"/srv:/data:ro", "named:/n"}, Tmpfs: map[string]string{"/cache": ""},
		Mounts: []mount.Mount{{Type: mount.TypeVolume, Target: "/anon"}}}
	ms, err := d.parseMounts(hc, map[string]struct{}{"/data": {}, "/cache": {}, "/img/": {}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, string(m.Type)+" "+m.Name+" "+m.Source+" "+m.Destination)
	}
	slices.Sort(got)
	want := []string{"bind  /srv /data", "volume   /anon", "volume   /img", "volume named  /n"}
	if !slices.Equal(got, want) {
		t.Errorf("parseMounts: %q, want %q", got, want)
	}
	for _, c := range []struct {
		hc   container.HostConfig
		want string
	}{
		{container.HostConfig{Binds: []string{"/a:/x"}, Mounts: []mount.Mount{{Type: mount.TypeTmpfs, Target: "/x/"}}}, "Duplicate mount point: /x"},
		{container.HostConfig{Binds: []string{"/a:/x"}, Tmpfs: map[string]string{"/x": ""}}, "Duplicate mount point: /x"},
		{container.HostConfig{VolumesFrom: []string{"nosuch"}}, "No such container: nosuch"},
		{container.HostConfig{VolumesFrom: []string{"c:rx"}}, "invalid mode for volumes-from"},
	} {
		if _, err := d.parseMounts(&c.hc, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseMounts(%+v): %v, want %q", c.hc, err, c.want)
		}
	}
}
