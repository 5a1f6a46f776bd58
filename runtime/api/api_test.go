package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/images"
)

// TestStatus: every error class gets dockerd's status, also when wrapped
// by a package sentinel and a message.
func TestStatus(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", images.ErrNoSuchImage), http.StatusNotFound},
		{errPageNotFound, http.StatusNotFound},
		{fmt.Errorf("x: %w", images.ErrBadArchive), http.StatusBadRequest},
		{fmt.Errorf("x: %w", images.ErrConflict), http.StatusConflict},
		{fmt.Errorf("x: %w", drivers.ErrAlreadyExists), http.StatusConflict},
		{fmt.Errorf("x: %w", drivers.ErrNotImplemented), http.StatusNotImplemented},
		{fmt.Errorf("x: %w", containers.ErrNoSuchContainer), http.StatusNotFound},
		{fmt.Errorf("x: %w", containers.ErrNameConflict), http.StatusConflict},
		{fmt.Errorf("x: %w", containers.ErrBadTransition), http.StatusConflict},
		{errMethod, http.StatusMethodNotAllowed},
		{fmt.Errorf("network in use: %w", ErrForbidden), http.StatusForbidden},
		{errors.New("disk on fire"), http.StatusInternalServerError},
		{fmt.Errorf("x: %w", drivers.ErrUnavailable), http.StatusInternalServerError},
	} {
		if got := Status(c.err); got != c.want {
			t.Errorf("Status(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for v, ok := range map[[2]string]bool{
		{"1", "24"}: true, {"1", "41"}: true, {"1", "30"}: true,
		{"1", "23"}: false, {"1", "42"}: false, {"2", "0"}: false,
	} {
		err := checkVersion(v[0], v[1])
		if (err == nil) != ok || (err != nil && !errors.Is(err, drivers.ErrInvalidArgument)) {
			t.Errorf("version %s.%s: %v, want ok=%v", v[0], v[1], err, ok)
		}
	}
}
