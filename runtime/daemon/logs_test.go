package daemon

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMergeEnvUserSignal(t *testing.T) {
	if got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3"}); !reflect.DeepEqual(got, []string{"PATH=/bin", "A=2", "B=3"}) {
		t.Errorf("mergeEnv: %q", got)
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An image's /etc/group pointing at the host's must not be followed.
	if err := os.Symlink("/etc/group", filepath.Join(root, "etc/group")); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string][2]int{"": {0, 0}, "root": {0, 0}, "nobody": {65534, 65534}, "1000": {1000, 0}, "1000:50": {1000, 50}} {
		if u, err := lookupUser(root, in); err != nil || u.Uid != want[0] || u.Gid != want[1] {
			t.Errorf("lookupUser(%q): %+v %v", in, u, err)
		}
	}
	if u, err := lookupUser(root, "nobody"); err != nil || u.Home != "/home" {
		t.Errorf("lookupUser(nobody): %+v %v, want home /home", u, err)
	}
	if _, err := lookupUser(root, "nosuch"); err == nil {
		t.Error("lookupUser(nosuch): no error")
	}
	if _, err := lookupUser(root, "root:adm"); err == nil {
		t.Error("lookupUser(root:adm) found the host's group adm through a symlink")
	}
	for in, want := range map[string]unix.Signal{"": unix.SIGTERM, "9": unix.SIGKILL, "KILL": unix.SIGKILL, "sigint": unix.SIGINT} {
		if s, err := parseSignal(in, unix.SIGTERM); err != nil || s != want {
			t.Errorf("parseSignal(%q): %v %v", in, s, err)
		}
	}
	if _, err := parseSignal("NOPE", unix.SIGTERM); err == nil {
		t.Error("parseSignal(NOPE): no error")
	}
}
