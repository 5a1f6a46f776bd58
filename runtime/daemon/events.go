package daemon

import (
	"context"
	"strconv"
	"time"

	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/events"
)

// emit publishes one event.
func (d *Daemon) emit(typ eventtypes.Type, action eventtypes.Action, id string, attrs map[string]string) {
	d.events.Publish(typ, action, id, attrs)
}

// containerEvent publishes a container's event with the attributes
// dockerd gives them: the container's labels, its name and image, and
// extra (exitCode, signal, ...).
func (d *Daemon) containerEvent(r containers.Record, action eventtypes.Action, extra map[string]string) {
	attrs := map[string]string{}
	if r.Config != nil {
		for k, v := range r.Config.Labels {
			attrs[k] = v
		}
	}
	attrs["name"], attrs["image"] = r.Name, r.Image
	for k, v := range extra {
		attrs[k] = v
	}
	d.emit(eventtypes.ContainerEventType, action, r.ID, attrs)
}

// containerEventByID is containerEvent for a container known by ID; a
// container gone meanwhile publishes nothing.
func (d *Daemon) containerEventByID(id string, action eventtypes.Action, extra map[string]string) {
	if r, err := d.ctrs.Get(id); err == nil {
		d.containerEvent(r, action, extra)
	}
}

// imageEvent publishes an image's event; ref is the name it was known by
// (dockerd's ID for tag and untag events is the image's ID, with the
// reference in the name attribute).
func (d *Daemon) imageEvent(action eventtypes.Action, id, ref string) {
	attrs := map[string]string{}
	if ref != "" {
		attrs["name"] = ref
	}
	d.emit(eventtypes.ImageEventType, action, id, attrs)
}

// Events answers GET /events: once subscribed it calls ready, then
// writes the kept events since since (zero: none) and new ones until
// until (zero: until ctx ends), each through emit.
func (d *Daemon) Events(ctx context.Context, since, until time.Time, f filters.Args, ready func(), emit func(eventtypes.Message) error) error {
	if err := f.Validate(events.ValidKeys()); err != nil {
		return badFilter("%v", err)
	}
	return d.events.Stream(ctx, since, until, events.NewFilter(f), ready, emit)
}

// exitAttrs are a die event's attributes, as dockerd's: the exit code and
// how long the container ran, in seconds.
func exitAttrs(code int, ran time.Duration) map[string]string {
	return map[string]string{"exitCode": strconv.Itoa(code), "execDuration": strconv.Itoa(int(ran.Seconds()))}
}

// EndStreams ends the streams in flight that would run for ever (GET
// /events, streamed docker stats), for a shutdown: the HTTP server's
// graceful stop waits for every request.
func (d *Daemon) EndStreams() {
	d.endStreamsOnce.Do(func() {
		d.events.Close()
		close(d.streamsEnd)
	})
}
