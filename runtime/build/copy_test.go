package build

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/layerlab/layerlab/drivers/feature"
)

// TestApplyCopy lands staged sources in a root as COPY does: a file to a
// file path renamed, into an existing directory kept by name, --chown
// by names from the root's /etc/passwd and /etc/group, and a symlink of
// the root that points out resolved inside the root, never written
// through.
func TestApplyCopy(t *testing.T) {
	if os.Geteuid() != 0 {
		feature.Skip(t, feature.Root, "COPY --chown sets owners")
	}
	ctx := context.Background()
	src := tree(t, "a.txt", "d/b.txt")
	outside := t.TempDir()
	root := tree(t, "etc/passwd", "etc/group", "bin/sh")
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("app:x:1234:2345::/home/app:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte("grp:x:3456:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	s := &session{tmp: t.TempDir()}
	for _, tc := range []struct {
		srcs  []string
		dest  string
		chown string
		want  string // path under root
		uid   uint32
		gid   uint32
	}{
		{[]string{"a.txt"}, "/renamed.txt", "", "renamed.txt", 0, 0},
		{[]string{"a.txt"}, "/bin", "app", "bin/a.txt", 1234, 2345},
		{[]string{"d"}, "/copied/", "app:grp", "copied/b.txt", 1234, 3456},
		// escape -> OUTSIDE is followed inside the root: root/OUTSIDE/x.txt.
		{[]string{"a.txt"}, "/escape/x.txt", "1:2", filepath.Join(outside, "x.txt"), 1, 2},
	} {
		srcs, err := resolve(src, tc.srcs, false)
		if err != nil {
			t.Fatal(err)
		}
		staged, _, err := s.stageTar(srcs, false)
		if err != nil {
			t.Fatal(err)
		}
		c := copySpec{chown: tc.chown, text: "COPY"}
		c.DestPath = tc.dest
		if err := s.apply(ctx, root, c, srcs, staged, tc.dest); err != nil {
			t.Fatalf("COPY %v %s: %v", tc.srcs, tc.dest, err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, tc.want), &st); err != nil {
			t.Fatalf("COPY %v %s: %s: %v", tc.srcs, tc.dest, tc.want, err)
		}
		if st.Uid != tc.uid || st.Gid != tc.gid {
			t.Errorf("COPY --chown=%s: %s owned by %d:%d, want %d:%d", tc.chown, tc.want, st.Uid, st.Gid, tc.uid, tc.gid)
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("COPY wrote through a symlink out of the root: %v", entries)
	}
	srcs, _ := resolve(src, []string{"a.txt"}, false)
	staged, _, _ := s.stageTar(srcs, false)
	c := copySpec{chown: "nosuchuser", text: "COPY"}
	if err := s.apply(ctx, root, c, srcs, staged, "/x"); err == nil {
		t.Error("--chown of an unknown user was accepted")
	}
}
