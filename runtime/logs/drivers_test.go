package logs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

func readSource(t *testing.T, s Source, o ReadOptions) []string {
	t.Helper()
	var got []string
	fl, err := s.Read(o, func(e Entry) error { got = append(got, e.Stream+":"+e.Log); return nil })
	if err != nil {
		t.Fatal(err)
	}
	fl.Close()
	return got
}

// TestLocalFollowAndRepair: a follower sees every line across a
// compressing rotation; a record torn by a crash is cut off at the next
// open so later records stay readable.
func TestLocalFollowAndRepair(t *testing.T) {
	path := filepath.Join(t.TempDir(), "container.log")
	l, err := OpenLocal(path, FileOptions{MaxSize: 60, MaxFile: 2, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	w := NewWriter(l)
	w.Write("stdout", []byte("first\n"))
	var got []string
	emit := func(e Entry) error { got = append(got, e.Log); return nil }
	fl, err := LocalSource(path).Read(ReadOptions{Tail: -1}, emit)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	for i := 0; i < 8; i++ {
		w.Write("stdout", []byte(fmt.Sprintf("next %d\n", i)))
		if err := fl.Poll(emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "first\n|next 0\n|next 1\n|next 2\n|next 3\n|next 4\n|next 5\n|next 6\n|next 7\n"; strings.Join(got, "|") != want {
		t.Errorf("followed %q, want %q", strings.Join(got, "|"), want)
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 40, 0, 1}) // a record cut after 2 of its 40 bytes
	f.Close()
	l, err = OpenLocal(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Log(&Message{Line: []byte("after"), Stream: "stderr", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := readSource(t, LocalSource(path), ReadOptions{Tail: 1}); strings.Join(got, "|") != "stderr:after\n" {
		t.Errorf("after a torn record: %q", got)
	}
}

// TestValidate: dockerd's refusals, with the supported drivers and the
// options a driver takes named.
func TestValidate(t *testing.T) {
	for _, c := range []struct {
		driver string
		opts   map[string]string
		want   string // "" for valid
	}{
		{"json-file", map[string]string{"max-size": "1k", "max-file": "3", "compress": "true", "labels": "a"}, ""},
		{"json-file", map[string]string{"x": "1"}, "unknown log opt 'x' for json-file log driver"},
		{"local", map[string]string{"tag": "x"}, "unknown log opt 'tag' for local log driver"},
		{"local", map[string]string{"max-size": "1m", "max-file": "2"}, ""},
		{"nosuch", nil, "no log driver named 'nosuch' is registered (supported: fluentd, json-file, local, none, syslog)"},
		{"none", map[string]string{"max-size": "1m"}, "unknown log opt 'max-size' for none log driver (no options)"},
		{"syslog", map[string]string{"syslog-address": "udp://127.0.0.1:5514", "syslog-facility": "local3", "syslog-format": "rfc5424micro", "tag": "{{.Name}}", "cache-disabled": "true"}, ""},
		{"syslog", map[string]string{"syslog-address": "tcp+tls://h:6514", "syslog-tls-skip-verify": "true"}, ""},
		{"syslog", map[string]string{"syslog-address": "ftp://h"}, `unknown scheme "ftp"`},
		{"syslog", map[string]string{"syslog-address": "udp://h:99999"}, "port must be 1-65535"},
		{"syslog", map[string]string{"syslog-facility": "kitchen"}, "syslog-facility"},
		{"syslog", map[string]string{"syslog-format": "rfc9999"}, "syslog-format"},
		{"syslog", map[string]string{"syslog-tls-cert": "/c"}, "needs syslog-address tcp+tls"},
		{"syslog", map[string]string{"tag": "{{.Nope}}"}, "tag="},
		{"syslog", map[string]string{"cache-max-size": "big"}, "cache-max-size"},
		{"fluentd", map[string]string{"fluentd-address": "unix:///run/f.sock", "fluentd-async": "true", "fluentd-retry-wait": "2s", "fluentd-max-retries": "3", "fluentd-buffer-limit": "8m", "fluentd-sub-second-precision": "true"}, ""},
		{"fluentd", map[string]string{"fluentd-address": "tcp://h:x"}, "fluentd-address"},
		{"fluentd", map[string]string{"fluentd-retry-wait": "soon"}, "fluentd-retry-wait"},
		{"fluentd", map[string]string{"syslog-address": "udp://h"}, "unknown log opt 'syslog-address' for fluentd log driver"},
		{"json-file", map[string]string{"labels-regex": "a("}, "labels-regex"},
		{"fluentd", map[string]string{"env-regex": "[", "fluentd-address": "h:1"}, "env-regex"},
	} {
		err := Validate(c.driver, c.opts)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Validate(%s, %v): %v", c.driver, c.opts, err)
		case c.want != "" && (!errors.Is(err, drivers.ErrInvalidArgument) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Validate(%s, %v): %v, want an invalid argument saying %q", c.driver, c.opts, err, c.want)
		}
	}
}

// TestSourcesAndNone: where docker logs reads each driver, and dockerd's
// refusal for the drivers that keep nothing.
func TestSourcesAndNone(t *testing.T) {
	i := Info{ContainerID: "abc", Dir: t.TempDir()}
	for driver, want := range map[string]string{"json-file": "abc-json.log", "local": "local-logs/container.log", "fluentd": "local-logs/container-cached.log"} {
		s, err := NewSource(i, driver, nil)
		if err != nil || s.Path != filepath.Join(i.Dir, want) {
			t.Errorf("NewSource(%s) = %q, %v; want %s", driver, s.Path, err, want)
		}
	}
	for driver, opts := range map[string]map[string]string{"none": nil, "syslog": {"cache-disabled": "true"}} {
		if _, err := NewSource(i, driver, opts); !errors.Is(err, ErrNotReadable) || !errors.Is(err, drivers.ErrNotImplemented) ||
			!strings.Contains(err.Error(), "configured logging driver does not support reading") {
			t.Errorf("NewSource(%s, %v): %v, want dockerd's not-supported error", driver, opts, err)
		}
	}
	l, err := New(i, "none", nil)
	if err != nil || l.Log(&Message{Line: []byte("x")}) != nil || l.Close() != nil {
		t.Fatalf("none: %v", err)
	}
	if ents, _ := os.ReadDir(i.Dir); len(ents) != 0 {
		t.Errorf("the none driver wrote %v", ents)
	}
}

// TestTag: dockerd's tag template fields.
func TestTag(t *testing.T) {
	i := Info{ContainerID: "0123456789abcdef0123", ContainerName: "web", ImageName: "busybox:latest",
		ImageID: "sha256:fedcba9876543210aaaa", DaemonName: "layerlabd"}
	for tmpl, want := range map[string]string{
		"":                                  "0123456789ab",
		"{{.ID}}":                           "0123456789ab",
		"{{.FullID}}":                       "0123456789abcdef0123",
		"{{.Name}}/{{.ImageName}}":          "web/busybox:latest",
		"{{.ImageID}} {{.ImageFullID}}":     "fedcba987654 sha256:fedcba9876543210aaaa",
		"{{.DaemonName}}.{{.Name}}.{{.ID}}": "layerlabd.web.0123456789ab",
		"plain":                             "plain",
	} {
		if got, err := Tag(tmpl, i); err != nil || got != want {
			t.Errorf("Tag(%q) = %q, %v; want %q", tmpl, got, err, want)
		}
	}
	for _, bad := range []string{"{{.Nope}}", "{{", "{{.ID"} {
		if _, err := Tag(bad, i); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("Tag(%q): %v, want an invalid argument", bad, err)
		}
	}
}

// TestSyslogFormats checks dockerd's formats byte for byte.
func TestSyslogFormats(t *testing.T) {
	at := time.Date(2026, 12, 4, 9, 5, 7, 123456789, time.FixedZone("X", 3600))
	for name, c := range map[string]struct {
		f    syslogFormatter
		want string
	}{
		"unix":         {unixFormat, "<30>Dec  4 09:05:07 web[42]: hello"},
		"rfc3164":      {rfc3164Format, "<30>Dec  4 09:05:07 box web[42]: hello"},
		"rfc5424":      {rfc5424Format(time.RFC3339), "<30>1 2026-12-04T09:05:07+01:00 box web 42 web - hello"},
		"rfc5424micro": {rfc5424Format("2006-01-02T15:04:05.000000Z07:00"), "<30>1 2026-12-04T09:05:07.123456+01:00 box web 42 web - hello"},
	} {
		if got := c.f(30, "box", "web", "hello", at, 42); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, c.want)
		}
	}
	for _, c := range []struct {
		opts   map[string]string
		stream string
		want   string
	}{
		{map[string]string{"syslog-address": "udp://h:1", "syslog-format": "rfc3164"}, "stdout", "<30>Dec  4 08:05:07 box web[42]: hello\n"},
		{map[string]string{"syslog-address": "udp://h:1", "syslog-facility": "local7"}, "stderr", "<187>Dec  4 08:05:07 web[42]: hello\n"},
		{map[string]string{"syslog-address": "tcp+tls://h:1", "syslog-format": "rfc5424"}, "stdout", "50 <30>1 2026-12-04T08:05:07Z box web 42 web - hello\n"},
		{map[string]string{"syslog-address": "tcp://h:1", "syslog-format": "rfc5424"}, "stdout", "<30>1 2026-12-04T08:05:07Z box web 42 web - hello\n"},
	} {
		o, err := parseSyslogOptions(c.opts)
		if err != nil {
			t.Fatal(err)
		}
		s := &Syslog{o: o, tag: "web", hostname: "box", pid: 42}
		got := s.frameAt(&Message{Line: []byte("hello"), Stream: c.stream}, at.UTC())
		if !bytes.Equal(got, []byte(c.want)) {
			t.Errorf("%v %s:\n got %q\nwant %q", c.opts, c.stream, got, c.want)
		}
	}
}

// FuzzValidate: any driver name and option is accepted or refused as an
// invalid argument, never a panic.
func FuzzValidate(f *testing.F) {
	for _, c := range [][3]string{
		{"json-file", "max-size", "1k"}, {"local", "compress", "false"}, {"syslog", "syslog-address", "tcp+tls://[::1]:6514"},
		{"syslog", "tag", "{{.Name}}-{{.ID}}"}, {"fluentd", "fluentd-address", "unix:///x"}, {"fluentd", "fluentd-retry-wait", "1h"},
		{"syslog", "cache-max-file", "3"}, {"nosuch", "", ""},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, driver, key, value string) {
		if err := Validate(driver, map[string]string{key: value}); err != nil && !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Fatalf("Validate(%q, %q=%q): %v is not an invalid argument", driver, key, value, err)
		}
	})
}

// FuzzReadLocal feeds arbitrary bytes as a local-format file: reading and
// following never panic, and every entry came from a whole record.
func FuzzReadLocal(f *testing.F) {
	f.Add(appendRecord(nil, &Message{Line: []byte("hi"), Stream: "stderr", Time: time.Unix(1, 2)}))
	f.Add([]byte{0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "container.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fl, err := LocalSource(path).Read(ReadOptions{Tail: 3}, func(Entry) error { return nil })
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatal(err)
			}
			return
		}
		if err := fl.Poll(func(Entry) error { return nil }); err != nil && !errors.Is(err, errCorrupt) {
			t.Fatal(err)
		}
		fl.Close()
		if err := repairLocal(path); err != nil {
			t.Fatal(err)
		}
		if _, err := LocalSource(path).Read(ReadOptions{Tail: -1}, func(Entry) error { return nil }); err != nil {
			t.Fatalf("after repair: %v", err)
		}
	})
}

// TestFollowMaxFileOne: with max-file 1 a follower of a local log goes on
// into the new live file from its start, never mid-record.
func TestFollowMaxFileOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "container.log")
	l, err := OpenLocal(path, FileOptions{MaxSize: 50, MaxFile: 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	emit := func(e Entry) error { got = append(got, e.Log); return nil }
	w := NewWriter(l)
	w.Write("stdout", []byte("a 0\n"))
	fl, err := LocalSource(path).Read(ReadOptions{Tail: -1}, emit)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	var want []string
	for i := 1; i < 12; i++ { // a rotation every third record
		w.Write("stdout", []byte(fmt.Sprintf("a %d\n", i)))
		if i%2 == 0 {
			if err := fl.Poll(emit); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fl.Poll(emit); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		want = append(want, fmt.Sprintf("a %d\n", i))
	}
	if strings.Join(got, "") != strings.Join(want, "") {
		t.Errorf("followed %q, want every line once", got)
	}
}

// TestAttributes: the labels/env options pick the container's values, as
// dockerd's json-file writes them into every line's attrs.
func TestAttributes(t *testing.T) {
	i := Info{ContainerID: "c1", Dir: t.TempDir(), Labels: map[string]string{"tier": "front", "team": "io", "other": "x"},
		Env: []string{"STAGE=prod", "REGION=eu", "PATH=/bin", "EMPTY="}}
	got, err := Attributes(i, map[string]string{"labels": "tier, missing", "labels-regex": "^te", "env": "STAGE,EMPTY", "env-regex": "^REG"})
	want := map[string]string{"tier": "front", "team": "io", "STAGE": "prod", "EMPTY": "", "REGION": "eu"}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Attributes: %v %v, want %v", got, err, want)
	}
	if got, err := Attributes(i, map[string]string{"max-size": "1m"}); got != nil || err != nil {
		t.Fatalf("no labels/env options: %v %v, want nil", got, err)
	}
	l, err := New(i, JSONFileDriver, map[string]string{"labels": "tier", "env": "STAGE"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Log(&Message{Line: []byte("hi"), Stream: "stdout", Time: time.Unix(1, 0).UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(JSONPath(i))
	if want := `{"log":"hi\n","stream":"stdout","time":"1970-01-01T00:00:01Z","attrs":{"STAGE":"prod","tier":"front"}}` + "\n"; err != nil || string(data) != want {
		t.Fatalf("json-file line %q %v, want %q", data, err, want)
	}
}

// TestFailedRotationKeepsLogging: a rotation that fails is reported once
// and the output goes on into the live file.
func TestFailedRotationKeepsLogging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c-json.log")
	r, err := openRotating(path, FileOptions{MaxSize: 10, MaxFile: 2})
	if err != nil {
		t.Fatal(err)
	}
	// path.1 a non-empty directory: the rename into it fails.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.write([]byte("0123456789\n")); err != nil {
		t.Fatal(err)
	}
	if err := r.write([]byte("second\n")); err == nil || !strings.Contains(err.Error(), "rotating container log") {
		t.Fatalf("write across a failing rotation: %v, want the rotation's error", err)
	}
	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	if err := r.write([]byte("third\n")); err != nil {
		t.Fatalf("write after the failure: %v", err)
	}
	if err := r.close(); err != nil {
		t.Fatal(err)
	}
	if err := r.write([]byte("late\n")); err == nil {
		t.Fatal("a write after close succeeded")
	}
	old, _ := os.ReadFile(path + ".1")
	live, _ := os.ReadFile(path)
	if got := string(old) + string(live); got != "0123456789\nsecond\nthird\n" {
		t.Fatalf("the log holds %q, want every line", got)
	}
}
