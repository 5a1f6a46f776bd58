package registry

import (
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/layerlab/layerlab/drivers"
)

func TestInsecure(t *testing.T) {
	s, err := New(Config{Insecure: []string{"reg.example:5000", "10.1.0.0/16", "Plain.Example"}})
	if err != nil {
		t.Fatal(err)
	}
	for reg, want := range map[string]bool{
		"127.0.0.1:5000": true, "127.9.9.9": true, "localhost:5000": true, "localhost": true, "[::1]:5000": true,
		"reg.example:5000": true, "reg.example:5001": false, "reg.example": false,
		"plain.example:443": true, "plain.example": true,
		"10.1.2.3:5000": true, "10.2.0.1:5000": false, "192.168.1.1": false,
		"index.docker.io": false, "localhost.example:5000": false,
	} {
		if got := s.Insecure(reg); got != want {
			t.Errorf("Insecure(%q) = %v, want %v", reg, got, want)
		}
	}
	if hosts := s.InsecureHosts(); strings.Join(hosts, ",") != "plain.example,reg.example:5000" {
		t.Errorf("InsecureHosts = %v", hosts)
	}
	if nets := s.InsecureNets(); len(nets) != 3 || nets[0].String() != "127.0.0.0/8" || nets[2].String() != "10.1.0.0/16" {
		t.Errorf("InsecureNets = %v", nets)
	}
}

func TestParseInsecureRefusals(t *testing.T) {
	for entry, want := range map[string]string{
		"":                 "empty",
		"http://reg:5000":  "without a scheme",
		"10.0.0.0/33":      "not a CIDR",
		"reg:5000/path":    "not a CIDR",
		"UPPER_case!:5000": "want HOST[:PORT]",
		"reg:notaport":     "want HOST[:PORT]",
	} {
		_, _, err := ParseInsecure(entry)
		if !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseInsecure(%q) = %v, want an invalid argument saying %q", entry, err, want)
		}
	}
	if _, err := New(Config{Insecure: []string{"https://x"}}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("New with a bad entry: %v", err)
	}
}

func TestDecodeAuth(t *testing.T) {
	enc := func(s string, e *base64.Encoding) string { return e.EncodeToString([]byte(s)) }
	js := `{"username":"alice","password":"p+/w?","serveraddress":"reg:5000","identitytoken":"tok"}`
	for _, h := range []string{enc(js, base64.URLEncoding), enc(js, base64.RawURLEncoding), enc(js, base64.StdEncoding)} {
		ac, err := DecodeAuth(h)
		if err != nil || ac.Username != "alice" || ac.Password != "p+/w?" || ac.ServerAddress != "reg:5000" || ac.IdentityToken != "tok" {
			t.Errorf("DecodeAuth(%q) = %+v, %v", h, ac, err)
		}
	}
	if ac, err := DecodeAuth(""); err != nil || ac != (regtypes.AuthConfig{}) {
		t.Errorf("empty header: %+v %v", ac, err)
	}
	for _, bad := range []string{"!!!", enc("not json", base64.URLEncoding), enc(`{"username":1}`, base64.URLEncoding)} {
		if _, err := DecodeAuth(bad); !errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), "X-Registry-Auth") {
			t.Errorf("DecodeAuth(%q) = %v, want an invalid argument naming the header", bad, err)
		}
	}
}

func TestServerRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"": name.DefaultRegistry, "https://index.docker.io/v1/": name.DefaultRegistry,
		"reg:5000": "reg:5000", "http://127.0.0.1:5000": "127.0.0.1:5000", "https://reg.example/v2/": "reg.example",
	} {
		if got, err := ServerRegistry(in); err != nil || got != want {
			t.Errorf("ServerRegistry(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ServerRegistry("bad host!"); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("bad server address: %v", err)
	}
}

func TestParsePlatform(t *testing.T) {
	if p, err := ParsePlatform(""); err != nil || p.String() != "linux/amd64" {
		t.Errorf("default platform %v %v", p, err)
	}
	if p, err := ParsePlatform("linux/arm64/v8"); err != nil || p.Architecture != "arm64" || p.Variant != "v8" {
		t.Errorf("linux/arm64/v8: %v %v", p, err)
	}
	for _, bad := range []string{"linux", "/amd64"} {
		if _, err := ParsePlatform(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParsePlatform(%q) = %v", bad, err)
		}
	}
}

// TestLogin checks credentials against go-containerregistry's in-memory
// registry behind basic auth on loopback: the right password passes, a
// wrong one and none are ErrUnauthorized with the registry's words.
func TestLogin(t *testing.T) {
	srv := httptest.NewServer(basicAuth("alice", "s3cret", registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	s, err := New(Config{CertsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Login(ctx, regtypes.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: host}); err != nil {
		t.Fatalf("good login: %v", err)
	}
	for _, ac := range []regtypes.AuthConfig{{Username: "alice", Password: "wrong", ServerAddress: host}, {ServerAddress: "http://" + host}} {
		err := s.Login(ctx, ac)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Errorf("login %+v: %v, want unauthorized with the registry's code", ac, err)
		}
	}
}

func basicAuth(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestHTTPSOnly: a registry that is not insecure is never spoken to over
// plain http, even where go-containerregistry would fall back to it (a
// private address).
func TestHTTPSOnly(t *testing.T) {
	s, err := New(Config{CertsDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := s.transport("10.9.9.9:5000")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://10.9.9.9:5000/v2/", nil)
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "--insecure-registry 10.9.9.9:5000") {
		t.Fatalf("plain http to a secure registry: %v", err)
	}
}

func mustParse(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
