package registry

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	regtypes "github.com/docker/docker/api/types/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/layerlab/layerlab/drivers"
)

// DecodeAuth reads an X-Registry-Auth header: base64url JSON of an
// AuthConfig, as the docker CLI and docker-py send it. An empty header is
// anonymous.
func DecodeAuth(header string) (regtypes.AuthConfig, error) {
	if strings.TrimSpace(header) == "" {
		return regtypes.AuthConfig{}, nil
	}
	// Some clients send standard base64 or drop the padding; take both.
	h := strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimSpace(header))
	if m := len(h) % 4; m != 0 {
		h += strings.Repeat("=", 4-m)
	}
	ac, err := regtypes.DecodeAuthConfig(h)
	if err != nil {
		return regtypes.AuthConfig{}, fmt.Errorf("X-Registry-Auth: want base64url-encoded JSON such as {\"username\":...,\"password\":...}: %w: %w", drivers.ErrInvalidArgument, err)
	}
	return *ac, nil
}

// authenticator turns what the client sent into go-containerregistry's
// credentials: an identity token (from an earlier login) is a refresh
// token; a registry token is a bearer token; otherwise basic auth, or
// anonymous when there is none.
func authenticator(ac regtypes.AuthConfig) authn.Authenticator {
	c := authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
		IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}
	if c == (authn.AuthConfig{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(c)
}

// ServerRegistry turns a login's server address (empty, "host:port",
// "https://host:port/v1/") into the registry it names; empty is Docker
// Hub, as the CLI means it.
func ServerRegistry(addr string) (string, error) {
	a := strings.TrimSpace(addr)
	for _, p := range []string{"https://", "http://"} {
		a = strings.TrimPrefix(a, p)
	}
	a, _, _ = strings.Cut(a, "/")
	if a == "" || a == "index.docker.io" || a == "registry-1.docker.io" {
		return name.DefaultRegistry, nil
	}
	if err := checkHostPort(a); err != nil {
		return "", fmt.Errorf("server address %q: %w: %w", addr, drivers.ErrInvalidArgument, err)
	}
	return a, nil
}

// Login checks ac's credentials against the registry its server address
// names: go-containerregistry's transport does the registry's challenge
// (basic, or a token exchange with the credentials), then GET /v2/ must
// answer 200. A refusal wraps ErrUnauthorized with the registry's words.
func (s *Service) Login(ctx context.Context, ac regtypes.AuthConfig) error {
	host, err := ServerRegistry(ac.ServerAddress)
	if err != nil {
		return err
	}
	var opts []name.Option
	if s.Insecure(host) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return fmt.Errorf("server address %q: %w: %w", ac.ServerAddress, drivers.ErrInvalidArgument, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	rt, err := s.transport(host)
	if err != nil {
		return err
	}
	auth := authenticator(ac)
	t, err := transport.NewWithContext(ctx, reg, auth, rt, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return s.explain(host, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return s.explain(host, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return s.explain(host, err)
	}
	return nil
}
