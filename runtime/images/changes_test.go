package images

import (
	"errors"
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers"
)

func TestApplyChanges(t *testing.T) {
	base := ocispec.ImageConfig{Env: []string{"PATH=/bin", "A=1"}, WorkingDir: "/srv", Cmd: []string{"sh"}}
	cfg := base
	err := ApplyChanges(&cfg, []string{
		`CMD ["cat", "/f"]`,
		`entrypoint /bin/echo hi`,
		`ENV A=2 B="two words" C=x\ y`,
		`ENV LEGACY the whole rest`,
		"LABEL a=b \"c d\"=e\n# a comment\n\nWORKDIR sub",
		`USER nobody:nogroup`,
		`EXPOSE 80 53/UDP`,
		`VOLUME ["/data", "/logs"]`,
		`VOLUME /more`,
		`STOPSIGNAL SIGINT`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.ImageConfig{
		Cmd:          []string{"cat", "/f"},
		Entrypoint:   []string{"/bin/sh", "-c", "/bin/echo hi"},
		Env:          []string{"PATH=/bin", "A=2", "B=two words", "C=x y", "LEGACY=the whole rest"},
		Labels:       map[string]string{"a": "b", "c d": "e"},
		WorkingDir:   "/srv/sub",
		User:         "nobody:nogroup",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Volumes:      map[string]struct{}{"/data": {}, "/logs": {}, "/more": {}},
		StopSignal:   "SIGINT",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got  %+v\nwant %+v", cfg, want)
	}
	if !reflect.DeepEqual(base.Env, []string{"PATH=/bin", "A=1"}) {
		t.Fatalf("the caller's env changed: %v", base.Env)
	}
}

func TestApplyChangesRefuses(t *testing.T) {
	for _, ch := range []string{
		`RUN rm -rf /`, `FROM busybox`, `ENV`, `ENV A`, `ENV ="x"`, `LABEL nolabel`, `EXPOSE 0`, `EXPOSE 80/icmp`,
		`EXPOSE http`, `USER`, `USER a b`, `WORKDIR`, `VOLUME`, `VOLUME [""]`, `STOPSIGNAL`, `ENV A="unterminated`,
	} {
		cfg := ocispec.ImageConfig{Env: []string{"K=V"}}
		err := ApplyChanges(&cfg, []string{`CMD ["ok"]`, ch})
		if !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("%q: err %v, want ErrInvalidArgument", ch, err)
		}
		if cfg.Cmd != nil || len(cfg.Env) != 1 {
			t.Errorf("%q: a refused list of changes changed the config: %+v", ch, cfg)
		}
	}
}

// FuzzParseChanges checks that no change string panics the parser and
// that a refusal leaves the config as it was.
func FuzzParseChanges(f *testing.F) {
	for _, s := range []string{`CMD ["a","b"]`, `ENV a=b c="d e"`, "LABEL x='y z'\nEXPOSE 80/udp", `WORKDIR ../x`, `VOLUME ["/v"]`, `ENV A\`, `USER 1:2`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg := ocispec.ImageConfig{Env: []string{"K=V"}, Labels: map[string]string{"l": "v"}}
		if err := ApplyChanges(&cfg, []string{s}); err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", s, err)
			}
			if len(cfg.Env) != 1 || len(cfg.Labels) != 1 || cfg.Cmd != nil {
				t.Fatalf("%q: refused, yet the config changed: %+v", s, cfg)
			}
		}
	})
}
