package aufs

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// A branch as aufs leaves it: bookkeeping in the root, a file whiteout at
// the top and in a subdirectory, an opaque directory, plain files.
func TestWhiteouts(t *testing.T) {
	br := t.TempDir()
	for _, d := range []string{"a", "c", "d", ".wh..wh.plnk", ".wh..wh.orph"} {
		if err := os.Mkdir(filepath.Join(br, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{".wh..wh.aufs", ".wh.top", "a/.wh.b", "a/kept", "c/.wh..wh..opq", "c/new", "d/e", ".wh..wh.plnk/41.42"} {
		if err := os.WriteFile(filepath.Join(br, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Whiteouts(context.Background(), br)
	if err != nil {
		t.Fatal(err)
	}
	want := []Whiteout{
		{Kind: KindMeta, Path: ".wh..wh.aufs"},
		{Kind: KindMeta, Path: ".wh..wh.orph"},
		{Kind: KindMeta, Path: ".wh..wh.plnk"}, // not descended into
		{Kind: KindWhiteout, Path: ".wh.top", Target: "top"},
		{Kind: KindWhiteout, Path: "a/.wh.b", Target: "a/b"},
		{Kind: KindOpaque, Path: "c/.wh..wh..opq", Target: "c"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for _, w := range got {
		if w.Kind.String() == "unknown" {
			t.Errorf("%+v has no kind name", w)
		}
	}
}

func TestWhiteoutsOpaqueRootAndErrors(t *testing.T) {
	br := t.TempDir()
	if err := os.WriteFile(filepath.Join(br, WhiteoutOpaque), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Whiteouts(context.Background(), br)
	if err != nil || len(got) != 1 || got[0] != (Whiteout{Kind: KindOpaque, Path: WhiteoutOpaque, Target: "."}) {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := Whiteouts(context.Background(), filepath.Join(br, "missing")); !os.IsNotExist(err) {
		t.Fatalf("missing branch: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Whiteouts(ctx, br); err == nil {
		t.Fatal("a cancelled walk succeeded")
	}
}
