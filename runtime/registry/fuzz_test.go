package registry

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/layerlab/layerlab/drivers"
)

// FuzzDecodeAuth: any X-Registry-Auth header decodes or is refused as an
// invalid argument, never a panic.
func FuzzDecodeAuth(f *testing.F) {
	for _, s := range []string{"", "e30=", "e30", "!!!", base64.URLEncoding.EncodeToString([]byte(`{"username":"a","password":"b"}`)),
		base64.StdEncoding.EncodeToString([]byte(`{"identitytoken":"x"}`)), base64.URLEncoding.EncodeToString([]byte(`[1,2]`))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if _, err := DecodeAuth(h); err != nil && !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Fatalf("DecodeAuth(%q): %v is not an invalid argument", h, err)
		}
	})
}

// FuzzParseInsecure: an --insecure-registry entry parses (to a CIDR or a
// host the Service then matches) or is refused as an invalid argument.
func FuzzParseInsecure(f *testing.F) {
	for _, s := range []string{"reg:5000", "10.0.0.0/8", "::1/128", "http://x", "", "a/b", "[::1]:5000", "Ünïcode:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		n, host, err := ParseInsecure(entry)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("ParseInsecure(%q): %v is not an invalid argument", entry, err)
			}
			return
		}
		if (n == nil) == (host == "") {
			t.Fatalf("ParseInsecure(%q) = %v, %q: want exactly one", entry, n, host)
		}
		s, err := New(Config{Insecure: []string{entry}})
		if err != nil {
			t.Fatalf("New accepts none of what ParseInsecure accepted (%q): %v", entry, err)
		}
		if host != "" && !s.Insecure(host) {
			t.Fatalf("%q listed but not insecure", host)
		}
	})
}

// FuzzParsePlatform: a pull's platform parameter parses or is refused.
func FuzzParsePlatform(f *testing.F) {
	for _, s := range []string{"", "linux/amd64", "linux/arm64/v8", "linux", "/", "a/b/c/d", "linux/amd64:10.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		pl, err := ParsePlatform(p)
		if err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("ParsePlatform(%q): %v", p, err)
			}
			return
		}
		if pl.OS == "" || pl.Architecture == "" {
			t.Fatalf("ParsePlatform(%q) = %+v without OS or architecture", p, pl)
		}
	})
}
