package registry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/layerlab/layerlab/drivers"
)

// explain turns what go-containerregistry returned for a call to registry
// into an error of the right class with a sentence saying what to do:
// refused credentials (ErrUnauthorized), an unknown repository or
// manifest (not found), or a registry that cannot be reached (unavailable).
func (s *Service) explain(registry string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return fmt.Errorf("%w: %s (docker login %s first, with a user the registry knows): %w", ErrUnauthorized, d.Message, registry, err)
			case transport.DeniedErrorCode:
				return fmt.Errorf("%w: access denied by %s (docker login with a user allowed there): %w", ErrUnauthorized, registry, err)
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("%w: %w", drivers.ErrNotFound, err)
			}
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s refused the credentials (docker login %s first): %w", ErrUnauthorized, registry, registry, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", drivers.ErrNotFound, err)
		}
		return err
	}
	var unknownCA x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &verify) {
		return fmt.Errorf("registry %s: its TLS certificate is not trusted: put the CA that signed it in %s, or list the registry with --insecure-registry: %w: %w",
			registry, filepath.Join(s.certs, registry, "ca.crt"), drivers.ErrUnavailable, err)
	}
	var ne net.Error
	var dns *net.DNSError
	var op *net.OpError
	if errors.As(err, &dns) || errors.As(err, &op) || errors.As(err, &ne) {
		hint := ""
		if registry == name.DefaultRegistry {
			hint = "; an image named without a registry comes from Docker Hub: docker load it, or name a registry you run, e.g. 127.0.0.1:5000/busybox"
		}
		return fmt.Errorf("registry %s cannot be reached%s: %w: %w", registry, hint, drivers.ErrUnavailable, err)
	}
	return err
}
