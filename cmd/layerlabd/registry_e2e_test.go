package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers/feature"
)

// registryIP is a second address of lo in the daemon's network
// namespace: not loopback by its IP, so layerlabd treats a registry there
// as any remote one (HTTPS, its CA from the certs directory, plain http
// only when listed with --insecure-registry), and yet nothing leaves the
// namespace. registryIP2 is the one listed as insecure.
const (
	registryIP  = "10.213.0.1"
	registryIP2 = "10.213.0.2"
)

// dialIn returns a DialContext that opens its sockets in the network
// namespace of process pid: the test's own registry client (ggcr) reaches
// the registries there. Each dial runs on a thread of its own that is
// switched into the namespace and thrown away after (the goroutine exits
// locked), so no other goroutine ever runs in it.
func dialIn(pid int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
			f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				ch <- result{nil, err}
				return
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- result{nil, fmt.Errorf("setns: %w", err)}
				return
			}
			c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// registryServer is a docker-registry the test started.
type registryServer struct {
	addr string // HOST:PORT the daemon reaches it at
	log  string
}

func (r registryServer) logText() string {
	b, _ := os.ReadFile(r.log)
	return string(b)
}

// startRegistry starts Debian's docker-registry (distribution 2.8) in the
// network namespace of process pid, listening on listen, with its own
// config and storage directory; htpasswd (a file, "" for none) turns on
// basic auth, certFile/keyFile TLS. It is stopped by PID when the test
// ends.
func startRegistry(t *testing.T, pid int, listen, htpasswd, certFile, keyFile string) registryServer {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		feature.Skip(t, feature.Registry, "%s: %v (make setup installs docker-registry)", bin, err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  secret: layerlab-test\n",
		filepath.Join(dir, "storage"), listen)
	if certFile != "" {
		conf += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	if htpasswd != "" {
		conf += fmt.Sprintf("auth:\n  htpasswd:\n    realm: layerlab\n    path: %s\n", htpasswd)
	}
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r := registryServer{addr: listen, log: filepath.Join(dir, "registry.log")}
	exited := startService(t, pid, r.log, dir, bin, "serve", confPath)
	host, port, _ := net.SplitHostPort(listen)
	if host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	dial := dialIn(pid)
	eventually(t, 10*time.Second, "docker-registry listening on "+listen, func() bool {
		select {
		case <-exited:
			t.Fatalf("docker-registry exited:\n%s", r.logText())
		default:
		}
		c, err := dial(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return r
}

// htpasswdFile writes user:password as a bcrypt htpasswd file.
func htpasswdFile(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(p, []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var digestRE = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: [0-9]+`)

// TestEndToEndRegistry drives docker push, pull, login and logout through
// layerlabd against Debian's docker-registry run in the daemon's network
// namespace: a plain one on loopback (and, through a second address,
// as a non-loopback registry listed and not listed as insecure) and one
// with TLS (its CA in --registry-certs-dir) and htpasswd auth. It shows
// push with "Layer already exists" and a cross-repository mount, pull by
// tag and by digest with "Already exists", a manifest list and an OCI
// manifest, the auth refusals, and a Docker Hub name failing at once.
func TestEndToEndRegistry(t *testing.T) {
	t.Cleanup(func() { killLeftovers(t) })
	e := newTestEnv(t)
	withLoopback(t, &e)
	certs := t.TempDir()
	e.opts = []string{"--registry-certs-dir", certs, "--insecure-registry", registryIP2}
	e.start(t, "layerlabd.log")
	pid := e.d.cmd.Process.Pid
	c := cli{t: t, sock: e.sock, dir: e.tmp, d: e.d}
	ns := func(args ...string) {
		t.Helper()
		if out, err := inNetns(pid, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ns("ip", "addr", "add", registryIP+"/32", "dev", "lo")
	ns("ip", "addr", "add", registryIP2+"/32", "dev", "lo")

	plain := startRegistry(t, pid, "0.0.0.0:5000", "", "", "")
	reg := "127.0.0.1:5000"
	c.expect(0, "Loaded image: busybox:latest", "load", "-i", e.archive)
	busyboxID := strings.TrimSpace(c.expect(0, "sha256:", "image", "inspect", "-f", "{{.Id}}", "busybox"))

	// docker info reports the insecure registries.
	c.expect(0, registryIP2, "info")

	c.expect(0, "", "tag", "busybox", reg+"/bb")
	push := c.expect(0, "Pushed", "push", reg+"/bb")
	m := digestRE.FindStringSubmatch(push)
	if m == nil || !strings.Contains(push, "The push refers to repository ["+reg+"/bb]") {
		t.Fatalf("docker push: no digest line:\n%s", push)
	}
	pushed := m[1]
	c.expect(0, "Layer already exists", "push", reg+"/bb")
	c.expect(0, reg+"/bb@"+pushed, "image", "inspect", "-f", "{{.RepoDigests}}", reg+"/bb")

	// Another repository of the same registry: the layer is mounted, not
	// uploaded again; the registry saw the mount request.
	c.expect(0, "", "tag", "busybox", reg+"/other/bb:v1")
	c.expect(0, "Mounted from bb", "push", reg+"/other/bb:v1")
	if log := plain.logText(); !strings.Contains(log, "mount=sha256") || !strings.Contains(log, "from=bb") {
		t.Errorf("the registry saw no cross-repository mount:\n%s", log)
	}

	// Pull back by tag: everything removed first, so every layer is
	// downloaded; then run it.
	c.expect(0, "Untagged", "rmi", "-f", busyboxID)
	c.expect(0, "Deleted", "rmi", "busybox:two") // it shares busybox's layer
	c.expect(1, "No such image", "image", "inspect", reg+"/bb")
	pull := c.expect(0, "Status: Downloaded newer image for "+reg+"/bb:latest", "pull", reg+"/bb")
	for _, want := range []string{"latest: Pulling from bb", "Pull complete", "Digest: " + pushed} {
		if !strings.Contains(pull, want) {
			t.Errorf("docker pull lacks %q:\n%s", want, pull)
		}
	}
	c.expect(0, busyboxID, "image", "inspect", "-f", "{{.Id}}", reg+"/bb")
	c.expect(0, "pulled and running", "run", "--rm", reg+"/bb", "echo", "pulled and running")
	c.expect(0, "Image is up to date for "+reg+"/bb:latest", "pull", reg+"/bb")
	// The other repository's image shares the layer.
	c.expect(0, "Already exists", "pull", reg+"/other/bb:v1")

	// Every tag of a repository (-a): other/bb has v1, then v2 too.
	c.expect(0, "", "tag", reg+"/bb", reg+"/other/bb:v2")
	c.expect(0, "Layer already exists", "push", reg+"/other/bb:v2")
	c.expect(0, "", "rmi", reg+"/other/bb:v1", reg+"/other/bb:v2")
	all := c.expect(0, "Status: Downloaded newer image for "+reg+"/other/bb", "pull", "-a", reg+"/other/bb")
	if !strings.Contains(all, "v1: Pulling from other/bb") || !strings.Contains(all, "v2: Pulling from other/bb") {
		t.Errorf("docker pull -a lacks a tag:\n%s", all)
	}

	// By digest: the image comes back without a tag, named by its digest.
	c.expect(0, "Untagged", "rmi", "-f", busyboxID)
	c.expect(0, "Digest: "+pushed, "pull", reg+"/bb@"+pushed)
	c.expect(0, reg+"/bb@"+pushed, "image", "inspect", "-f", "{{.RepoDigests}} {{.RepoTags}}", reg+"/bb@"+pushed)
	c.expect(0, pushed, "images", "--digests", reg+"/bb")
	c.expect(0, "by digest", "run", "--rm", reg+"/bb@"+pushed, "echo", "by", "digest")

	checkManifestList(t, c, pid, reg, busyboxID)

	// Unknown image and tag: the CLI prints the registry's answer.
	c.expect(1, "manifest for "+reg+"/nosuch:latest not found", "pull", reg+"/nosuch")
	c.expect(1, "not found", "pull", reg+"/bb:nosuchtag")

	// The same registry by a non-loopback address: plain http is refused
	// unless it is listed as insecure.
	c.expect(1, "plain http refused", "pull", registryIP+":5000/bb")
	c.expect(0, "Downloaded newer image", "pull", registryIP2+":5000/bb")

	// A malformed X-Registry-Auth is refused before anything is fetched.
	for _, path := range []string{"/v1.41/images/create?fromImage=" + reg + "/bb&tag=latest", "/v1.41/images/" + reg + "/bb/push?tag=latest"} {
		req, err := http.NewRequest(http.MethodPost, "http://layerlabd"+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Registry-Auth", "not base64 JSON!")
		resp, err := apiClient(e.sock).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "X-Registry-Auth") {
			t.Errorf("POST %s with a bad X-Registry-Auth: %d %s", path, resp.StatusCode, body)
		}
	}

	// A name without a registry is Docker Hub's: with no network it fails
	// at once, saying what to do.
	start := time.Now()
	c.expect(1, "docker load it", "pull", "busybox:nosuch")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a pull from unreachable Docker Hub took %v", d)
	}

	authReg := checkAuthRegistry(t, c, pid, certs, reg+"/bb@"+pushed)
	checkDockerPyRegistry(t, e, reg, authReg)
	e.d.terminate(t)
	checkNoLeftovers(t)
}

// checkManifestList pushes with ggcr (from the test, into the daemon's
// namespace) a manifest list of the pushed busybox (amd64) and a random
// arm64 image, and an OCI manifest: docker pull picks amd64, --platform
// linux/arm64 the other, and the OCI image pulls as well.
func checkManifestList(t *testing.T, c cli, pid int, reg, busyboxID string) {
	t.Helper()
	opts := []remote.Option{remote.WithTransport(&http.Transport{DialContext: dialIn(pid)})}
	amd, err := remote.Image(mustRef(t, reg+"/bb:latest"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := arm.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "arm64"
	if arm, err = mutate.ConfigFile(arm, cf); err != nil {
		t.Fatal(err)
	}
	armID, err := arm.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{MediaType: types.DockerManifestSchema2, Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{MediaType: types.DockerManifestSchema2, Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	if err := remote.WriteIndex(mustRef(t, reg+"/multi:1"), idx, opts...); err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c.expect(0, "Digest: "+idxDigest.String(), "pull", reg+"/multi:1")
	c.expect(0, busyboxID, "image", "inspect", "-f", "{{.Id}}", reg+"/multi:1")
	c.expect(0, "Pull complete", "pull", "--platform", "linux/arm64", reg+"/multi:1")
	c.expect(0, armID.String()+" arm64", "image", "inspect", "-f", "{{.Id}} {{.Architecture}}", reg+"/multi:1")
	c.expect(1, "no matching manifest for linux/s390x", "pull", "--platform", "linux/s390x", reg+"/multi:1")

	oci := mutate.MediaType(mutate.ConfigMediaType(amd, types.OCIConfigJSON), types.OCIManifestSchema1)
	if err := remote.Write(mustRef(t, reg+"/oci:1"), oci, opts...); err != nil {
		t.Fatal(err)
	}
	c.expect(0, "Status: Downloaded newer image for "+reg+"/oci:1", "pull", reg+"/oci:1")
	c.expect(0, busyboxID, "image", "inspect", "-f", "{{.Id}}", reg+"/oci:1")
}

// checkAuthRegistry runs a registry with TLS and htpasswd on registryIP:
// its certificate is refused until the CA is in the certs directory, push
// and pull need a login, a bad password is refused, and logout ends it.
// It returns the registry's address.
func checkAuthRegistry(t *testing.T, c cli, pid int, certs, src string) string {
	t.Helper()
	p := newPKI(t, t.TempDir())
	reg := registryIP + ":5443"
	startRegistry(t, pid, reg, htpasswdFile(t, "alice", "s3cret"), p.serverCert, p.serverKey)
	login := func(code int, want, password string) {
		t.Helper()
		out, got := c.runIn(password+"\n", "login", reg, "-u", "alice", "--password-stdin")
		if got != code || !strings.Contains(out, want) {
			t.Fatalf("docker login %s: exit %d, want %d with %q in:\n%s\nlayerlabd log:\n%s", reg, got, code, want, out, c.d.logText())
		}
		t.Logf("docker login (exit %d):\n%s", got, out)
	}
	img := reg + "/private/bb"
	c.expect(0, "", "tag", src, img)
	c.expect(1, "certificate signed by unknown authority", "push", img)
	if err := os.MkdirAll(filepath.Join(certs, reg), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p.ca)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, reg, "ca.crt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.expect(1, "unauthorized", "push", img)
	login(1, "unauthorized", "wrong")
	login(0, "Login Succeeded", "s3cret")
	c.expect(0, "Pushed", "push", img)
	c.expect(0, "Untagged: "+img, "rmi", img)
	c.expect(0, "Downloaded newer image for "+img, "pull", img)
	c.expect(0, "", "logout", reg)
	c.expect(0, "Untagged: "+img, "rmi", img)
	c.expect(1, "unauthorized", "pull", img)
	return reg
}

// checkDockerPyRegistry runs testdata/dockerpy_registry.py: docker-py's
// images.push and images.pull (by tag and digest) against the plain
// registry and client.login against the one with auth.
func checkDockerPyRegistry(t *testing.T, e testEnv, reg, authReg string) {
	t.Helper()
	if err := exec.Command(python3, "-c", "import docker").Run(); err != nil {
		feature.Skip(t, feature.DockerPy, "%s cannot import docker (make setup installs python3-docker): %v", python3, err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "dockerpy_registry.py"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python3, "-B", script, e.sock, reg, authReg, "alice", "s3cret")
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+filepath.Join(e.tmp, "docker-py-config"))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "OK") {
		t.Fatalf("docker-py registry: %v\n%s\ndaemon log:\n%s", err, out, e.d.logText())
	}
	t.Logf("docker-py registry:\n%s", out)
}

// mustRef parses a reference to a loopback registry (plain http).
func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
