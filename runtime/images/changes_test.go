package images

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/layerlab/layerlab/drivers"
)

func TestApplyChanges(t *testing.T) {
	base := dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Env: []string{"PATH=/bin", "A=1"}, WorkingDir: "/srv", Cmd: []string{"sh"}}}
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
	want := dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{
		Cmd:          []string{"cat", "/f"},
		Entrypoint:   []string{"/bin/sh", "-c", "/bin/echo hi"},
		Env:          []string{"PATH=/bin", "A=2", "B=two words", "C=x y", "LEGACY=the whole rest"},
		Labels:       map[string]string{"a": "b", "c d": "e"},
		WorkingDir:   "/srv/sub",
		User:         "nobody:nogroup",
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "53/udp": {}},
		Volumes:      map[string]struct{}{"/data": {}, "/logs": {}, "/more": {}},
		StopSignal:   "SIGINT",
	}}
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
		`HEALTHCHECK`, `HEALTHCHECK CMD`, `HEALTHCHECK CMD []`, `HEALTHCHECK NONE extra`, `HEALTHCHECK --retries=2 NONE`,
		`HEALTHCHECK HTTP /`, `HEALTHCHECK --interval=-1s CMD true`, `HEALTHCHECK --interval=10us CMD true`,
		`HEALTHCHECK --interval 5s CMD true`, `HEALTHCHECK --timeout=soon CMD true`, `HEALTHCHECK --retries=-1 CMD true`,
		`HEALTHCHECK --retries=x CMD true`, `HEALTHCHECK --port=80 CMD true`,
	} {
		cfg := dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Env: []string{"K=V"}}}
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
	for _, s := range []string{`HEALTHCHECK --interval=1s --retries=3 CMD ["a"]`, `HEALTHCHECK NONE`, `HEALTHCHECK CMD x y`, `CMD ["a","b"]`, `ENV a=b c="d e"`, "LABEL x='y z'\nEXPOSE 80/udp", `WORKDIR ../x`, `VOLUME ["/v"]`, `ENV A\`, `USER 1:2`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cfg := dockerspec.DockerOCIImageConfig{ImageConfig: ocispec.ImageConfig{Env: []string{"K=V"}, Labels: map[string]string{"l": "v"}}}
		if err := ApplyChanges(&cfg, []string{s}); err != nil {
			if !errors.Is(err, drivers.ErrInvalidArgument) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidArgument", s, err)
			}
			if len(cfg.Env) != 1 || len(cfg.Labels) != 1 || cfg.Cmd != nil || cfg.Healthcheck != nil {
				t.Fatalf("%q: refused, yet the config changed: %+v", s, cfg)
			}
		}
	})
}

// TestApplyChangesHealthcheck: HEALTHCHECK in its forms, as a Dockerfile
// writes it, replaces the image's healthcheck.
func TestApplyChangesHealthcheck(t *testing.T) {
	for _, c := range []struct {
		change string
		want   dockerspec.HealthcheckConfig
	}{
		{`HEALTHCHECK CMD test -f /ok`, dockerspec.HealthcheckConfig{Test: []string{"CMD-SHELL", "test -f /ok"}}},
		{`HEALTHCHECK --interval=200ms --timeout=1s --start-period=2s --start-interval=50ms --retries=4 CMD ["test", "-f", "/ok"]`,
			dockerspec.HealthcheckConfig{Test: []string{"CMD", "test", "-f", "/ok"}, Interval: 200 * time.Millisecond, Timeout: time.Second,
				StartPeriod: 2 * time.Second, StartInterval: 50 * time.Millisecond, Retries: 4}},
		{`healthcheck --interval=0s cmd true`, dockerspec.HealthcheckConfig{Test: []string{"CMD-SHELL", "true"}}},
		{`HEALTHCHECK NONE`, dockerspec.HealthcheckConfig{Test: []string{"NONE"}}},
		{"HEALTHCHECK\t--retries=1\tCMD\techo  two  spaces", dockerspec.HealthcheckConfig{Test: []string{"CMD-SHELL", "echo  two  spaces"}, Retries: 1}},
	} {
		cfg := dockerspec.DockerOCIImageConfig{}
		cfg.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "old"}, Retries: 9}
		if err := ApplyChanges(&cfg, []string{c.change}); err != nil {
			t.Errorf("%q: %v", c.change, err)
			continue
		}
		if !reflect.DeepEqual(*cfg.Healthcheck, c.want) {
			t.Errorf("%q: %+v, want %+v", c.change, *cfg.Healthcheck, c.want)
		}
	}
	// A refused change leaves the healthcheck as it was.
	cfg := dockerspec.DockerOCIImageConfig{}
	cfg.Healthcheck = &dockerspec.HealthcheckConfig{Test: []string{"CMD", "old"}}
	if err := ApplyChanges(&cfg, []string{`HEALTHCHECK CMD new`, `HEALTHCHECK --retries=-1 CMD x`}); err == nil ||
		!strings.Contains(err.Error(), "--retries cannot be negative") || cfg.Healthcheck.Test[1] != "old" {
		t.Errorf("refused HEALTHCHECK: %v, healthcheck now %+v", err, cfg.Healthcheck)
	}
}
