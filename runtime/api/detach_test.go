package api

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/layerlab/layerlab/drivers"
)

func TestParseDetachKeys(t *testing.T) {
	for in, want := range map[string]string{
		"":               "\x10\x11",
		"ctrl-p,ctrl-q":  "\x10\x11",
		"ctrl-a,x":       "\x01x",
		"ctrl-@":         "\x00",
		"ctrl-\\,ctrl-_": "\x1c\x1f",
	} {
		got, err := ParseDetachKeys(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseDetachKeys(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ctrl-1", "ctrl-", "ab", ",", "ctrl-p,"} {
		if _, err := ParseDetachKeys(bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseDetachKeys(%q): %v, want an invalid argument", bad, err)
		}
	}
}

func TestEscapeReader(t *testing.T) {
	keys := []byte("\x10\x11")
	for _, c := range []struct{ in, out string }{
		{"ls\n\x10\x11after", "ls\n"},
		{"a\x10b\x10\x10\x11", "a\x10b\x10"}, // a held-back key that was input
		{"\x10\x11", ""},
	} {
		// One byte at a time too: a match across reads.
		for _, r := range []io.Reader{bytes.NewReader([]byte(c.in)), iotest.OneByteReader(bytes.NewReader([]byte(c.in)))} {
			detached := false
			got, err := io.ReadAll(&escapeReader{r: r, keys: keys, onDetach: func() { detached = true }})
			if !errors.Is(err, ErrDetached) || string(got) != c.out || !detached {
				t.Errorf("%q: read %q, %v (detached %v); want %q and ErrDetached", c.in, got, err, detached, c.out)
			}
		}
	}
	got, err := io.ReadAll(&escapeReader{r: bytes.NewReader([]byte("no keys\x10")), keys: keys})
	if err != nil || string(got) != "no keys\x10" {
		t.Errorf("without the keys: %q, %v; want all the input, a trailing partial match too, and EOF", got, err)
	}
}

// FuzzParseDetachKeys: any detachKeys value is keys or an invalid argument.
func FuzzParseDetachKeys(f *testing.F) {
	for _, s := range []string{"ctrl-p,ctrl-q", "a", "ctrl-[", "ctrl-é", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseDetachKeys(s)
		if err != nil && !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Fatalf("ParseDetachKeys(%q): %v", s, err)
		}
		if err == nil && len(keys) == 0 {
			t.Fatalf("ParseDetachKeys(%q): no keys", s)
		}
	})
}
