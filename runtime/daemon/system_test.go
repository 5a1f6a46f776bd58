package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/events"

	"github.com/layerlab/layerlab/drivers"
)

// TestDiskUsageIsTheDriversUsage: GET /system/df adds up to what the
// driver itself reports for every snapshot it holds (image layers plus
// containers' writable layers), and a container's SizeRw is the data it
// wrote. GET /events replays the load and the creates.
func TestDiskUsageIsTheDriversUsage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("vfs keeps owners: needs root")
	}
	d, srv, archive := servedDaemon(t)
	start := time.Now()
	if resp, body := call(t, srv, "POST", "/v1.41/images/load?quiet=1", archive); resp.StatusCode != 200 {
		t.Fatalf("load: %d %s", resp.StatusCode, body)
	}
	var ids []string
	for _, name := range []string{"ctr-a", "ctr-b"} {
		resp, body := call(t, srv, "POST", "/v1.41/containers/create?name="+name, []byte(`{"Image":"busybox","Cmd":["true"]}`))
		var created struct{ ID string }
		if err := json.Unmarshal(body, &created); resp.StatusCode != 201 || err != nil {
			t.Fatalf("create %s: %d %s", name, resp.StatusCode, body)
		}
		ids = append(ids, created.ID)
	}
	drv, err := d.Driver("vfs")
	if err != nil {
		t.Fatal(err)
	}
	// vfs serves an active snapshot as a bind of its directory (inspect's
	// GraphDriver.Data.Dir): write 1 MiB into container a's without
	// running it.
	if err := os.WriteFile(filepath.Join(snapshotDir(t, srv, ids[0]), "written"), bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	resp, body := call(t, srv, "GET", "/v1.41/system/df", nil)
	var du types.DiskUsage
	if err := json.Unmarshal(body, &du); resp.StatusCode != 200 || err != nil {
		t.Fatalf("df: %d %s", resp.StatusCode, body)
	}
	var total int64
	err = drv.Walk(context.Background(), func(ctx context.Context, info drivers.Info) error {
		u, err := drv.Usage(ctx, info.Name)
		total += u.Size
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var rw int64
	sizes := map[string]int64{}
	for _, c := range du.Containers {
		rw += c.SizeRw
		sizes[c.ID] = c.SizeRw
	}
	if du.LayersSize <= 0 || du.LayersSize+rw != total {
		t.Fatalf("df: layers %d + containers %d, want the driver's total %d", du.LayersSize, rw, total)
	}
	if sizes[ids[0]] < 1<<20 || sizes[ids[0]] > 1<<20+64<<10 || sizes[ids[1]] > 64<<10 {
		t.Fatalf("SizeRw: a %d (wrote 1 MiB), b %d (wrote nothing)", sizes[ids[0]], sizes[ids[1]])
	}
	// The archive holds busybox:latest and busybox:two; only the first is
	// unpacked (its containers'), so its layers are all there is.
	found := false
	for _, img := range du.Images {
		if slices.Contains(img.RepoTags, "busybox:latest") {
			found = true
			if img.Containers != 2 || img.Size != du.LayersSize {
				t.Fatalf("df: busybox %+v, want 2 containers and the layers' size %d", img, du.LayersSize)
			}
		}
	}
	if !found {
		t.Fatalf("df: no busybox:latest in %+v", du.Images)
	}
	if len(du.Volumes) != 0 || du.BuildCache == nil {
		t.Fatalf("df volumes %v, build cache %v: want empty lists", du.Volumes, du.BuildCache)
	}

	q := fmt.Sprintf("/v1.41/events?since=%d.%09d&until=%d", start.Unix(), start.Nanosecond(), time.Now().Add(time.Second).Unix())
	resp, body = call(t, srv, "GET", q, nil)
	var got []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		var m events.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("event line %q: %v", sc.Text(), err)
		}
		got = append(got, string(m.Type)+" "+string(m.Action)+" "+m.Actor.Attributes["name"])
	}
	if want := "image load busybox:latest,image load busybox:two,container create ctr-a,container create ctr-b"; resp.StatusCode != 200 || strings.Join(got, ",") != want {
		t.Fatalf("events: %d %v, want %s", resp.StatusCode, got, want)
	}
	resp, body = call(t, srv, "GET", `/v1.41/events?filters={"bogus":{"x":true}}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(body), "bogus") {
		t.Fatalf("bad filter: %d %s", resp.StatusCode, body)
	}
}

// snapshotDir returns the directory of a vfs container's snapshot.
func snapshotDir(t *testing.T, srv *httptest.Server, id string) string {
	t.Helper()
	_, body := call(t, srv, "GET", "/v1.41/containers/"+id+"/json", nil)
	var insp struct {
		GraphDriver struct{ Data map[string]string }
	}
	if err := json.Unmarshal(body, &insp); err != nil {
		t.Fatal(err)
	}
	if dir := insp.GraphDriver.Data["Dir"]; dir != "" {
		return dir
	}
	t.Fatalf("no Dir in GraphDriver.Data: %s", body)
	return ""
}
