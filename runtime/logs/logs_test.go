package logs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerlab/layerlab/drivers"
)

// clockWriter writes to l entries one second apart from t0.
func clockWriter(l Logger, t0 time.Time) *Writer {
	w := NewWriter(l)
	n := 0
	w.now = func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
	return w
}

func readAll(t *testing.T, path string, o ReadOptions) []string {
	t.Helper()
	return readSource(t, JSONSource(path), o)
}

// jsonClockWriter opens the json-file log at path behind a clockWriter.
func jsonClockWriter(t *testing.T, path string, o FileOptions, t0 time.Time) *Writer {
	t.Helper()
	l, err := OpenJSONFile(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return clockWriter(l, t0)
}

// TestWriteRotateRead: json-file and local (compressed) logs rotate by
// size, keep max-file files and read back across them with tail, since
// and until, and an unended last line.
func TestWriteRotateRead(t *testing.T) {
	for _, c := range []struct {
		name    string
		open    func(string, FileOptions) (Logger, error)
		source  func(string) Source
		o       FileOptions // room for two entries a file
		rotated string      // the oldest kept file's suffix
	}{
		{"json-file", func(p string, o FileOptions) (Logger, error) { return OpenJSONFile(p, o) }, JSONSource, FileOptions{MaxSize: 200, MaxFile: 3}, ".2"},
		{"local", func(p string, o FileOptions) (Logger, error) { return OpenLocal(p, o) }, LocalSource, FileOptions{MaxSize: 45, MaxFile: 3, Compress: true}, ".2.gz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
			l, err := c.open(path, c.o)
			if err != nil {
				t.Fatal(err)
			}
			w := clockWriter(l, t0)
			for i := 1; i <= 9; i++ {
				w.Write("stdout", []byte(fmt.Sprintf("line %d\n", i)))
			}
			w.Write("stderr", []byte("no newline"))
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			files := Files(path)
			if len(files) != 3 || files[0] != path+c.rotated || files[2] != path {
				t.Fatalf("files %v, want %s%s, .1 and the live one", files, path, c.rotated)
			}
			for _, f := range files {
				// (gzip's header makes a tiny file larger, not a rotation)
				if fi, err := os.Stat(f); err != nil || (fi.Size() > c.o.MaxSize && !strings.HasSuffix(f, ".gz")) {
					t.Errorf("%s: %v, size over max-size %d", f, err, c.o.MaxSize)
				}
			}
			// Each file holds two entries: the three kept have lines 5-6,
			// 7-8, then 9 and the unended stderr line.
			read := func(o ReadOptions) string { return strings.Join(readSource(t, c.source(path), o), "|") }
			if got, want := read(ReadOptions{Tail: -1}), "stdout:line 5\n|stdout:line 6\n|stdout:line 7\n|stdout:line 8\n|stdout:line 9\n|stderr:no newline"; got != want {
				t.Fatalf("read %q, want %q", got, want)
			}
			if got := read(ReadOptions{Tail: 2}); got != "stdout:line 9\n|stderr:no newline" {
				t.Errorf("tail 2 across rotated files: %q", got)
			}
			if got := read(ReadOptions{Tail: 0}); got != "" {
				t.Errorf("tail 0: %q", got)
			}
			// Line 7 was written at t0+7s, line 8 at t0+8s.
			if got := read(ReadOptions{Tail: -1, Since: t0.Add(7 * time.Second), Until: t0.Add(8 * time.Second)}); got != "stdout:line 7\n|stdout:line 8\n" {
				t.Errorf("since t0+7s until t0+8s: %q", got)
			}
			if err := removeFiles(path); err != nil {
				t.Fatal(err)
			}
			if left, _ := filepath.Glob(path + "*"); len(left) != 0 {
				t.Errorf("removeFiles left %v", left)
			}
		})
	}
}

// TestLinesAcrossWrites: an entry per line, split at newlines across
// writes, streams kept apart, an unended line written at Close.
func TestLinesAcrossWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w := jsonClockWriter(t, path, FileOptions{}, time.Now())
	w.Write("stdout", []byte("hel"))
	w.Write("stderr", []byte("oops\n"))
	w.Write("stdout", []byte("lo\nwor"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, path, ReadOptions{Tail: -1}); strings.Join(got, "|") != "stderr:oops\n|stdout:hello\n|stdout:wor" {
		t.Fatalf("entries %q", got)
	}
}

func TestMaxFileOneTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w := jsonClockWriter(t, path, FileOptions{MaxSize: 100}, time.Now())
	for i := 0; i < 5; i++ {
		w.Write("stdout", []byte("0123456789\n"))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if files := Files(path); len(files) != 1 {
		t.Errorf("max-file 1 kept %v", files)
	}
	if got := readAll(t, path, ReadOptions{Tail: -1}); len(got) != 1 {
		t.Errorf("max-file 1 with room for one entry: read %q", got)
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w := jsonClockWriter(t, path, FileOptions{MaxSize: 200, MaxFile: 2}, time.Now())
	w.Write("stdout", []byte("first\n"))
	var got []string
	emit := func(e Entry) error { got = append(got, e.Log); return nil }
	fl, err := JSONSource(path).Read(ReadOptions{Tail: -1}, emit)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	for i := 0; i < 6; i++ { // rotates at least twice
		w.Write("stdout", []byte(fmt.Sprintf("next %d\n", i)))
		if err := fl.Poll(emit); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fl.Poll(emit); err != nil {
		t.Fatal(err)
	}
	want := "first\n|next 0\n|next 1\n|next 2\n|next 3\n|next 4\n|next 5\n"
	if strings.Join(got, "|") != want {
		t.Errorf("followed %q, want every line once: %q", strings.Join(got, "|"), want)
	}
}

func TestParseFileOptions(t *testing.T) {
	in := map[string]string{"max-size": "10k", "max-file": "3", "compress": "true"}
	o, err := parseFileOptions(JSONFileDriver, "", in, FileOptions{})
	if err != nil || o.MaxSize != 10<<10 || o.MaxFile != 3 || !o.Compress {
		t.Fatalf("parseFileOptions: %+v, %v", o, err)
	}
	if err := Validate(JSONFileDriver, map[string]string{"max-size": "10k", "tag": "x"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]string{
		{"max-size": "-2"}, {"max-size": "lots"}, {"max-file": "0"}, {"max-file": "3"}, {"compress": "maybe"}, {"syslog-address": "udp://x"},
	} {
		if err := Validate(JSONFileDriver, bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("Validate(json-file, %v): %v, want an invalid argument", bad, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Time{
		"":                     {},
		"1733301234":           time.Unix(1733301234, 0),
		"1733301234.5":         time.Unix(1733301234, 500000000),
		"1733301234.000000001": time.Unix(1733301234, 1),
		"2026-12-04T12:00:00Z": time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC),
	} {
		if got, err := ParseTime("since", in); err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5", "1.2.3", "12.1234567890", "12.-1", "+12", "99999999999999999999"} {
		if _, err := ParseTime("since", bad); !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Errorf("ParseTime(%q): %v, want an invalid argument", bad, err)
		}
	}
}

// FuzzRead feeds arbitrary bytes as a log file: Read and a Follower never
// panic, and every entry they emit came from a whole line.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"log":"hi\n","stream":"stdout","time":"2026-12-04T12:00:00Z"}` + "\n"))
	f.Add([]byte("{\"log\":\"torn"))
	f.Add([]byte("\n\n{}\n[1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "c-json.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fl, err := JSONSource(path).Read(ReadOptions{Tail: 3}, func(Entry) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := fl.Poll(func(Entry) error { return nil }); err != nil {
			t.Fatal(err)
		}
		fl.Close()
	})
}

// FuzzParseTime: any since/until value is a time or an invalid argument.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"1733301234.5", "2026-12-04T12:00:00Z", "-1", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseTime("since", s); err != nil && !errors.Is(err, drivers.ErrInvalidArgument) {
			t.Fatalf("ParseTime(%q): %v is not an invalid argument", s, err)
		}
	})
}

// TestLongLineCut: a line without a newline is cut into partial entries
// at maxLine, so it cannot grow the daemon's memory, and read back whole.
func TestLongLineCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c-json.log")
	w := jsonClockWriter(t, path, FileOptions{}, time.Now())
	long := strings.Repeat("x", 2*maxLine+10)
	w.Write("stdout", []byte(long[:maxLine-1]))
	w.Write("stdout", []byte(long[maxLine-1:]+"\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := readAll(t, path, ReadOptions{Tail: -1})
	if len(got) != 3 || len(got[0]) != len("stdout:")+maxLine || strings.HasSuffix(got[0], "\n") || !strings.HasSuffix(got[2], "x\n") ||
		strings.Join(got, "") != "stdout:"+long[:maxLine]+"stdout:"+long[maxLine:2*maxLine]+"stdout:"+long[2*maxLine:]+"\n" {
		t.Errorf("a %d-byte line read back as %d entries", len(long), len(got))
	}
}
