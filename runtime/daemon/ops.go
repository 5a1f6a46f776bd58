package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	eventtypes "github.com/docker/docker/api/types/events"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/runtime/api"
)

// TopContainer answers GET /containers/{id}/top as dockerd does: it runs
// the host's ps with psArgs (default -ef) and keeps the rows whose PID is
// one of the container's processes (a row of threads, PID "-", follows
// its process).
func (d *Daemon) TopContainer(ctx context.Context, ref, psArgs string) (container.TopResponse, error) {
	var out container.TopResponse
	r, l, err := d.locked(ref)
	if err != nil {
		return out, err
	}
	c, err := running(r, l)
	var pids []int
	if err == nil {
		pids, err = c.Pids(ctx)
	}
	l.mu.Unlock()
	if err != nil {
		return out, err
	}
	d.containerEvent(r, eventtypes.ActionTop, nil)
	if psArgs == "" {
		psArgs = "-ef"
	}
	data, err := command.Run(ctx, "ps", strings.Fields(psArgs)...)
	if err != nil {
		return out, fmt.Errorf("ps %s: %w: %w", psArgs, err, drivers.ErrInvalidArgument)
	}
	return parsePS(string(data), pids)
}

// parsePS keeps the rows of ps's output whose PID is in pids; the last
// column (the command) keeps its spaces.
func parsePS(data string, pids []int) (container.TopResponse, error) {
	out := container.TopResponse{Processes: [][]string{}}
	lines := strings.Split(data, "\n")
	out.Titles = strings.Fields(lines[0])
	pidCol := slices.Index(out.Titles, "PID")
	if pidCol < 0 {
		return out, fmt.Errorf("Couldn't find PID field in ps output: %w", drivers.ErrInvalidArgument)
	}
	n := len(out.Titles)
	inContainer := false
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) <= pidCol {
			continue
		}
		if f[pidCol] != "-" {
			pid, err := strconv.Atoi(f[pidCol])
			if err != nil {
				return out, fmt.Errorf("unexpected pid %q in ps output: %w", f[pidCol], drivers.ErrInvalidArgument)
			}
			inContainer = slices.Contains(pids, pid)
		}
		if !inContainer {
			continue
		}
		if len(f) > n {
			f = append(f[:n-1:n-1], strings.Join(f[n-1:], " "))
		}
		out.Processes = append(out.Processes, f)
	}
	return out, nil
}

// RenameContainer answers POST /containers/{id}/rename, running or not.
func (d *Daemon) RenameContainer(_ context.Context, ref, name string) error {
	r, err := d.ctrs.Get(ref)
	if err != nil {
		return err
	}
	if err := d.ctrs.Rename(r.ID, name); err != nil {
		return err
	}
	// Its endpoints carry the name the embedded DNS server answers.
	if err := d.nets.Rename(r.ID, strings.TrimPrefix(name, "/")); err != nil {
		return fmt.Errorf("renaming the network endpoints of %s: %w", r.Name, err)
	}
	d.containerEventByID(r.ID, eventtypes.ActionRename, map[string]string{"oldName": "/" + r.Name})
	return nil
}

// ResizeContainer answers POST /containers/{id}/resize: the size of a
// running container's terminal.
func (d *Daemon) ResizeContainer(ctx context.Context, ref string, width, height uint16) error {
	r, l, err := d.locked(ref)
	if err != nil {
		return err
	}
	defer l.mu.Unlock()
	c, err := running(r, l)
	if err != nil {
		return err
	}
	if err := c.Resize(ctx, width, height); err != nil {
		return err
	}
	d.containerEvent(r, eventtypes.ActionResize, map[string]string{"height": strconv.Itoa(int(height)), "width": strconv.Itoa(int(width))})
	return nil
}

// RestartContainer answers POST /containers/{id}/restart: a stop (as
// docker stop, with its timeout) if it runs, then a start.
func (d *Daemon) RestartContainer(ctx context.Context, ref string, timeout *int) error {
	if err := d.StopContainer(ctx, ref, "", timeout); err != nil && !errors.Is(err, api.ErrNotModified) {
		return err
	}
	if err := d.StartContainer(ctx, ref); err != nil {
		return err
	}
	d.containerEventByID(ref, eventtypes.ActionRestart, nil)
	return nil
}
