package daemon

import (
	eventtypes "github.com/docker/docker/api/types/events"
)

// emit publishes one event. Containers' events carry the attributes
// dockerd's do: name, image and the container's labels.
func (d *Daemon) emit(typ eventtypes.Type, action eventtypes.Action, id string, attrs map[string]string) {
	d.events.Publish(typ, action, id, attrs)
}
