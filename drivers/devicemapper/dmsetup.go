package devicemapper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/layerlab/layerlab/drivers/command"
)

// dmsetupControl runs dmsetup for every operation, the way containerd's
// devmapper snapshotter and dockerd's graphdriver (through libdevmapper)
// do. Operations are not cancelled halfway: a dmsetup killed between its
// ioctls would leave a device half made.
type dmsetupControl struct{}

func (dmsetupControl) Kind() string { return controlDmsetup }

func (dmsetupControl) run(op string, args ...string) (string, error) {
	out, err := command.Run(context.Background(), "dmsetup", args...)
	if err != nil {
		e := &dmError{Op: op, Err: err}
		var ce *command.Error
		if errors.As(err, &ce) {
			e.Errno = dmsetupErrno(ce.Stderr)
		}
		return "", e
	}
	return strings.TrimSpace(string(out)), nil
}

func (c dmsetupControl) Create(name string, t target, readOnly bool) (devInfo, error) {
	args := []string{"create", name, "--table", t.String()}
	if readOnly {
		args = append(args, "--readonly")
	}
	if _, err := c.run("create "+name, args...); err != nil {
		return devInfo{}, err
	}
	info, err := c.Info(name)
	if err != nil {
		return info, err
	}
	return info, ensureNode(name, info)
}

func (c dmsetupControl) Message(name, msg string) error {
	_, err := c.run("message "+msg+" to "+name, "message", name, "0", msg)
	return err
}

func (c dmsetupControl) Suspend(name string) error {
	_, err := c.run("suspend "+name, "suspend", name)
	return err
}

func (c dmsetupControl) Resume(name string) error {
	_, err := c.run("resume "+name, "resume", name)
	return err
}

func (c dmsetupControl) Remove(name string, deferred bool) (bool, error) {
	args := []string{"remove", name}
	if deferred {
		args = []string{"remove", "--deferred", name}
	}
	if _, err := c.run("remove "+name, args...); err != nil {
		return false, err
	}
	if deferred { // dmsetup does not say whether it was deferred; ask
		if _, err := c.Info(name); err == nil {
			return true, nil
		}
	}
	removeNode(name)
	return false, nil
}

func (c dmsetupControl) Info(name string) (devInfo, error) {
	out, err := c.run("info "+name, "info", "--columns", "--noheadings", "--separator", " ", "-o", "major,minor,open,attr", name)
	if err != nil {
		return devInfo{}, err
	}
	return parseDmsetupInfo(out)
}

// parseDmsetupInfo reads "major minor open attr", attr being
// (L)ive, (I)nactive, (s)uspended, (r)ead-only or read-(w)rite.
func parseDmsetupInfo(line string) (devInfo, error) {
	var info devInfo
	var attr string
	if _, err := fmt.Sscan(line, &info.Major, &info.Minor, &info.OpenCount, &attr); err != nil {
		return info, fmt.Errorf("dmsetup info %q: %w", line, err)
	}
	info.LiveTable = strings.Contains(attr, "L")
	info.Suspended = strings.Contains(attr, "s")
	info.ReadOnly = strings.Contains(attr, "r")
	return info, nil
}

func (c dmsetupControl) Status(name string) (target, error) {
	out, err := c.run("status "+name, "status", name)
	if err != nil {
		return target{}, err
	}
	return parseTableLine(out)
}

func (c dmsetupControl) Table(name string) (target, error) {
	out, err := c.run("table "+name, "table", name)
	if err != nil {
		return target{}, err
	}
	return parseTableLine(out)
}

// parseTableLine reads "<start> <length> <type> <params...>", one line.
func parseTableLine(line string) (target, error) {
	line = strings.TrimSpace(line)
	f := strings.SplitN(line, " ", 4)
	if len(f) < 3 || strings.Contains(line, "\n") {
		return target{}, fmt.Errorf("table line %q: want one <start> <length> <type> <params>", line)
	}
	var t target
	var err error
	if t.Start, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return t, fmt.Errorf("table line %q: %w", line, err)
	}
	if t.Length, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return t, fmt.Errorf("table line %q: %w", line, err)
	}
	t.Type = f[2]
	if len(f) == 4 {
		t.Params = strings.TrimSpace(f[3])
	}
	return t, nil
}

func (c dmsetupControl) List() ([]string, error) {
	out, err := c.run("ls", "ls")
	if err != nil {
		return nil, err
	}
	return parseDmsetupList(out), nil
}

// parseDmsetupList reads "name\t(major:minor)" lines, or "No devices found".
func parseDmsetupList(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && strings.HasPrefix(f[1], "(") {
			names = append(names, f[0])
		}
	}
	return names
}

func (c dmsetupControl) Targets() (map[string]string, error) {
	out, err := c.run("targets", "targets")
	if err != nil {
		return nil, err
	}
	return parseDmsetupTargets(out), nil
}

// parseDmsetupTargets reads "thin-pool        v1.22.0" lines.
func parseDmsetupTargets(out string) map[string]string {
	targets := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			targets[f[0]] = strings.TrimPrefix(f[1], "v")
		}
	}
	return targets
}

func (dmsetupControl) Close() error { return nil }
