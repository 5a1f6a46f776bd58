package daemon

import (
	"slices"
	"testing"

	"github.com/docker/docker/api/types/container"
)

// TestParsePS keeps the container's rows of ps's output, the command
// with its spaces in the last column and thread rows ("-") after their
// process, as dockerd's top does.
func TestParsePS(t *testing.T) {
	ps := "UID   PID  PPID  C STIME TTY  TIME     CMD\n" +
		"root  10   1     0 12:00 ?    00:00:00 sleep 300\n" +
		"root  11   1     0 12:00 ?    00:00:00 other thing\n" +
		"-     -    -     0 12:00 ?    00:00:00 -\n" +
		"root  12   10    0 12:00 ?    00:00:00 sh -c echo a  b\n" +
		"-     -    -     0 12:00 ?    00:00:00 -\n"
	top, err := parsePS(ps, []int{10, 12})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Titles) != 8 || top.Titles[1] != "PID" {
		t.Fatalf("titles %q", top.Titles)
	}
	if len(top.Processes) != 3 || !slices.Equal(top.Processes[0], []string{"root", "10", "1", "0", "12:00", "?", "00:00:00", "sleep 300"}) ||
		top.Processes[1][7] != "sh -c echo a b" || top.Processes[2][1] != "-" {
		t.Fatalf("processes %q", top.Processes)
	}
	if _, err := parsePS("USER COMMAND\nroot x\n", nil); err == nil {
		t.Fatal("ps output without PID accepted")
	}
	if _, err := parsePS("PID CMD\nabc x\n", nil); err == nil {
		t.Fatal("a non-numeric pid accepted")
	}
}

// TestShouldRestart is dockerd's decision table.
func TestShouldRestart(t *testing.T) {
	p := func(name string, n int) container.RestartPolicy {
		return container.RestartPolicy{Name: container.RestartPolicyMode(name), MaximumRetryCount: n}
	}
	for _, c := range []struct {
		policy      container.RestartPolicy
		code, count int
		manual      bool
		want        bool
	}{
		{p("", 0), 1, 0, false, false},
		{p("no", 0), 1, 0, false, false},
		{p("always", 0), 0, 9, true, true},
		{p("unless-stopped", 0), 0, 0, false, true},
		{p("unless-stopped", 0), 1, 0, true, false},
		{p("on-failure", 0), 0, 0, false, false},
		{p("on-failure", 0), 1, 100, false, true},
		{p("on-failure", 2), 1, 1, false, true},
		{p("on-failure", 2), 1, 2, false, false},
	} {
		if got := shouldRestart(c.policy, c.code, c.count, c.manual); got != c.want {
			t.Errorf("%+v exit %d count %d manual %v: %v, want %v", c.policy, c.code, c.count, c.manual, got, c.want)
		}
	}
}
