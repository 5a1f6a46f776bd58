package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEndToEndFilesystem drives the filesystem operations with the real
// docker CLI: diff, commit (of a stopped container on overlay2 and vfs, of
// a running one), the committed image run on both drivers, history,
// export + import round trips (plain, gzip, stdin), cp both ways on
// stopped and running containers, cp through a container's symlink to a
// host path, the raw API's refusals, ps filters and sizes, and container
// and image prune.
func TestEndToEndFilesystem(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := startTestDaemon(t)
	c := e.busyboxCLI(t)

	for _, drv := range []string{"overlay2", "vfs"} {
		name, img := "c1-"+drv, "img-"+drv+":v1"
		c.expect(0, "", "run", "--storage-opt", "driver="+drv, "--name", name, "busybox", "sh", "-c", "echo x > /f; rm /bin/ls")
		diff := c.expect(0, "A /f", "diff", name)
		if want := "C /bin\nD /bin/ls\nA /f\n"; diff != want {
			t.Fatalf("docker diff %s: %q, want %q (the runtime's mount points left out)", name, diff, want)
		}
		c.expect(0, "sha256:", "commit", "-a", "me", "-m", "msg", "-c", `CMD ["cat","/f"]`, "-c", "ENV FROM=commit", name, img)
		// The committed layer, unpacked on the container's driver and on
		// the other one.
		for _, on := range []string{"overlay2", "vfs"} {
			if out := c.expect(0, "x", "run", "--rm", "--storage-opt", "driver="+on, img); out != "x\n" {
				t.Fatalf("run %s on %s: %q, want x", img, on, out)
			}
		}
		c.expect(127, "executable file not found", "run", "--rm", img, "ls")
		c.expect(0, "commit\n", "run", "--rm", img, "sh", "-c", "echo $FROM")
		c.expect(0, "msg", "history", img)
		var insp []struct {
			Author, Comment string
			Config          struct{ Cmd []string }
			RootFS          struct{ Layers []string }
		}
		if err := json.Unmarshal([]byte(c.expect(0, "", "image", "inspect", img)), &insp); err != nil || len(insp) != 1 {
			t.Fatalf("inspect %s: %v %s", img, err, c.expect(0, "", "image", "inspect", img))
		}
		if i := insp[0]; i.Author != "me" || i.Comment != "msg" || strings.Join(i.Config.Cmd, " ") != "cat /f" || len(i.RootFS.Layers) != 2 {
			t.Fatalf("inspect %s: %+v", img, i)
		}
	}
	c.expect(1, "RUN is not a valid change command", "commit", "-c", "RUN rm -rf /", "c1-vfs", "bad:1")
	c.expect(1, "No such container", "commit", "nosuch", "bad:1")

	// A running container is committed paused, and runs on after.
	c.expect(0, "", "run", "-d", "--name", "r1", "busybox", "sh", "-c", "echo y > /g; exec sleep 300")
	waitFor(t, c, "A /g", "diff", "r1")
	c.expect(0, "sha256:", "commit", "r1", "img-run:1")
	c.expect(0, "y\n", "run", "--rm", "img-run:1", "cat", "/g")
	c.expect(0, "running", "inspect", "-f", "{{.State.Status}}", "r1")

	checkExportImport(t, c)
	checkCopy(t, c)
	checkArchiveAPI(t, e.sock, e.tmp)

	// ps filters and sizes.
	exited := c.expect(0, "", "ps", "-a", "--filter", "status=exited", "-q")
	if n := len(strings.Fields(exited)); n < 2 {
		t.Fatalf("ps -a --filter status=exited: %q, want the stopped containers", exited)
	}
	if out := c.expect(0, "r1", "ps", "--filter", "name=r1"); strings.Contains(out, "c1-") {
		t.Fatalf("ps --filter name=r1: %s", out)
	}
	if out := c.expect(0, "", "ps", "--filter", "name=c1-vfs", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("ps (running only) --filter name=c1-vfs: %q, want nothing", out)
	}
	c.expect(0, "c1-vfs", "ps", "-a", "--filter", "name=c1-vfs", "--filter", "exited=0")
	c.expect(0, "r1", "ps", "-a", "--filter", "ancestor=busybox", "--filter", "status=running")
	c.expect(0, "virtual", "ps", "-a", "-s", "--filter", "name=r1", "--format", "{{.Size}}")
	c.expect(1, "invalid filter", "ps", "--filter", "status=sleepy")
	if out := c.expect(0, "", "ps", "-l", "--format", "{{.Names}}"); out != "r1\n" {
		t.Fatalf("ps -l: %q, want r1 (the newest container)", out)
	}

	// Prune: the stopped containers go, the running one stays; then the
	// dangling image, then (-a) every image no container uses.
	c.expect(0, "Deleted Containers:", "container", "prune", "-f")
	if out := strings.Fields(c.expect(0, "", "ps", "-a", "--format", "{{.Names}}")); len(out) != 1 || out[0] != "r1" {
		t.Fatalf("after container prune: %v, want only r1", out)
	}
	dangling := strings.TrimSpace(c.expect(0, "sha256:", "commit", "r1"))
	c.expect(0, dangling, "image", "prune", "-f")
	c.expect(1, "No such image", "image", "inspect", dangling)
	c.expect(0, "img-vfs", "image", "prune", "-a", "-f")
	if out := strings.Fields(c.expect(0, "busybox", "images", "--format", "{{.Repository}}")); len(out) != 1 {
		t.Fatalf("after image prune -a: %v, want busybox (used by r1) only", out)
	}
	c.expect(0, "r1", "rm", "-f", "r1")
	checkNoContainerMounts(t, e.d.cmd.Process.Pid, e.dataRoot)
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// waitFor runs the CLI until its output holds want, for up to 10 s.
func waitFor(t *testing.T, c cli, want string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := c.run(args...)
		if strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker %s: %q never showed %q", strings.Join(args, " "), out, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tarNames lists the names of a tar.
func tarNames(t *testing.T, data []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading tar: %v (%d names read)", err, len(names))
		}
		names = append(names, h.Name)
	}
}

func has(names []string, n string) bool {
	for _, x := range names {
		if x == n {
			return true
		}
	}
	return false
}

func checkExportImport(t *testing.T, c cli) {
	c.expect(0, "", "export", "-o", "c1.tar", "c1-overlay2")
	data, err := os.ReadFile(filepath.Join(c.dir, "c1.tar"))
	if err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, data)
	if !has(names, "f") || !has(names, "bin/sh") || has(names, "bin/ls") {
		t.Fatalf("export: %d names, want f and bin/sh without bin/ls: %v", len(names), names)
	}
	// A running container exports too.
	c.expect(0, "", "export", "-o", "r1.tar", "r1")
	if data, err := os.ReadFile(filepath.Join(c.dir, "r1.tar")); err != nil || !has(tarNames(t, data), "g") {
		t.Fatalf("export of the running r1 lacks g: %v", err)
	}
	c.expect(0, "sha256:", "import", "-c", `CMD ["cat","/f"]`, "-m", "imported", "c1.tar", "imp:1")
	if out := c.expect(0, "x", "run", "--rm", "imp:1"); out != "x\n" {
		t.Fatalf("run imp:1: %q", out)
	}
	c.expect(0, "imported", "history", "imp:1")
	c.expect(127, "executable file not found", "run", "--rm", "imp:1", "ls")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "c1.tar.gz"), gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.expect(0, "sha256:", "import", "c1.tar.gz", "imp:gz")
	c.expect(0, "x\n", "run", "--rm", "--storage-opt", "driver=vfs", "imp:gz", "cat", "/f")
	if out, code := c.runIn(string(data), "import", "-", "imp2"); code != 0 || !strings.Contains(out, "sha256:") {
		t.Fatalf("cat c1.tar | docker import - imp2: exit %d: %s", code, out)
	}
	c.expect(0, "x\n", "run", "--rm", "imp2", "cat", "/f")
	if err := os.WriteFile(filepath.Join(c.dir, "notatar"), []byte("this is not a tar archive, not at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.expect(1, "", "import", "notatar", "bad:1")
}

func checkCopy(t *testing.T, c cli) {
	if err := os.WriteFile(filepath.Join(c.dir, "file"), []byte("copied in\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	// Into and out of a stopped and a running container.
	for _, ctr := range []string{"c1-vfs", "r1"} {
		c.expect(0, "", "cp", "./file", ctr+":/tmp/")
		out := filepath.Join(c.dir, "back-"+ctr)
		c.expect(0, "", "cp", ctr+":/tmp/file", out)
		if b, err := os.ReadFile(out); err != nil || string(b) != "copied in\n" {
			t.Fatalf("cp to %s and back: %q %v", ctr, b, err)
		}
		c.expect(0, "", "cp", ctr+":/etc/passwd", "./passwd-"+ctr)
		if b, err := os.ReadFile(filepath.Join(c.dir, "passwd-"+ctr)); err != nil || !strings.Contains(string(b), "root:x:0:0") {
			t.Fatalf("cp %s:/etc/passwd: %q %v", ctr, b, err)
		}
		tarOut := c.expect(0, "", "cp", ctr+":/etc", "-")
		if names := tarNames(t, []byte(tarOut)); !has(names, "etc/") || !has(names, "etc/passwd") {
			t.Fatalf("cp %s:/etc -: %v", ctr, names)
		}
		c.expect(1, "Could not find the file /nosuch in container", "cp", ctr+":/nosuch", "./x")
	}
	// What cp wrote in the running r1 is in its rootfs: commit sees it.
	c.expect(0, "A /tmp/file", "diff", "r1")

	// A symlink in the container to a path that exists on the host: cp
	// follows it inside the container's rootfs, never to the host.
	host := t.TempDir()
	c.expect(0, "", "run", "--name", "evil", "busybox", "sh", "-c",
		"mkdir -p "+host+" && ln -s "+host+" /evil && ln -s ../../../../../../.."+host+" /evil2")
	c.expect(0, "", "cp", "./file", "evil:/evil/")
	c.expect(0, "", "cp", "./file", "evil:/evil2/file2")
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("cp through a container's symlink wrote on the host: %v", entries)
	}
	c.expect(0, "", "cp", "evil:"+host+"/file2", "./back-evil")
	if b, _ := os.ReadFile(filepath.Join(c.dir, "back-evil")); string(b) != "copied in\n" {
		t.Fatalf("cp through the symlink did not land in the container: %q", b)
	}
	c.expect(0, "", "rm", "evil")
}

// checkArchiveAPI sends what the CLI would not: a tar with an entry that
// leaves the target, a missing path, no path.
func checkArchiveAPI(t *testing.T, sock, dir string) {
	client := apiClient(sock)
	host := t.TempDir()
	mkTar := func(entries ...*tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range entries {
			if h.Typeflag == tar.TypeReg {
				h.Size = 2
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				_, _ = tw.Write([]byte("x\n"))
			}
		}
		_ = tw.Close()
		return b.Bytes()
	}
	reg := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644} }
	checkAPIErrors(t, client, []apiError{
		{"PUT", "/v1.41/containers/r1/archive?path=/tmp", mkTar(reg("ok-before"), reg("../escape")), 400, "leaves the directory"},
		{"PUT", "/v1.41/containers/r1/archive?path=/tmp", mkTar(reg("/abs")), 400, "leaves the directory"},
		{"PUT", "/v1.41/containers/r1/archive?path=/tmp", mkTar(&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}), 400, "outside the directory"},
		{"PUT", "/v1.41/containers/r1/archive?path=/tmp", mkTar(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: host}, reg("l/pwned")), 404, "Could not find"},
		{"PUT", "/v1.41/containers/r1/archive?path=/nosuch", mkTar(reg("a")), 404, "Could not find"},
		{"PUT", "/v1.41/containers/r1/archive?path=/etc/passwd", mkTar(reg("a")), 400, "not a directory"},
		{"PUT", "/v1.41/containers/r1/archive?path=/tmp", []byte("not a tar at all, not one bit of it................"), 400, "archive"},
		{"GET", "/v1.41/containers/r1/archive", nil, 400, "path is required"},
		{"GET", "/v1.41/containers/r1/archive?path=/nosuch", nil, 404, "Could not find"},
		{"GET", "/v1.41/containers/nosuch/changes", nil, 404, "No such container"},
		{"POST", "/v1.41/commit?container=r1&repo=Bad:Ref", nil, 400, "reference"},
		{"POST", "/v1.41/images/create?fromSrc=http://example.com/x.tar", nil, 501, "only from the request body"},
		// Docker Hub is out of reach of the daemon's namespace: a prompt
		// failure that says so.
		{"POST", "/v1.41/images/create?fromImage=alpine&tag=3", nil, 500, "registry index.docker.io cannot be reached"},
		{"POST", "/v1.41/images/create?fromImage=alpine&platform=linux", nil, 400, "want OS/ARCH"},
		{"POST", "/v1.41/images/create?tag=3", nil, 400, "fromImage is required"},
		{"POST", "/v1.41/containers/prune?filters=%7B%22color%22%3A%7B%22red%22%3Atrue%7D%7D", nil, 400, "invalid filter"},
	})
	if entries, _ := os.ReadDir(host); len(entries) != 0 {
		t.Fatalf("a PUT archive wrote on the host: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape")); err == nil {
		t.Fatal("a PUT archive wrote outside the container")
	}
	// The refused tar wrote nothing, not even its first, harmless entry.
	resp, err := client.Head("http://layerlabd/v1.41/containers/r1/archive?path=/tmp/ok-before")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("HEAD /tmp/ok-before: %d, want 404: the refused tar was partly written", resp.StatusCode)
	}
	resp, err = client.Head("http://layerlabd/v1.41/containers/r1/archive?path=/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Docker-Container-Path-Stat") == "" {
		t.Fatalf("HEAD /bin/sh: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestEndToEndFilesystemDockerPy drives the same operations with
// docker-py (testdata/dockerpy_fs_e2e.py): diff, commit, get_archive,
// put_archive, export, import_image_from_data, list filters and prune.
func TestEndToEndFilesystemDockerPy(t *testing.T) {
	runDockerPy(t, "dockerpy_fs_e2e.py")
}
