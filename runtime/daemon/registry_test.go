package daemon

import "testing"

func TestPullRef(t *testing.T) {
	for _, c := range [][3]string{
		{"reg:5000/bb", "1.36", "reg:5000/bb:1.36"},
		{"reg:5000/bb", "sha256:abc", "reg:5000/bb@sha256:abc"},
	} {
		if got := pullRef(c[0], c[1]); got != c[2] {
			t.Errorf("pullRef(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}
