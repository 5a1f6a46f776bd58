package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	eventtypes "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	nettypes "github.com/docker/docker/api/types/network"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/api"
	"github.com/layerlab/layerlab/runtime/network"
)

// The network calls of the API: docker network ls/inspect/create/rm/
// connect/disconnect/prune.

// inspectNetwork is a record in dockerd's shape.
func inspectNetwork(nw network.Record) nettypes.Inspect {
	out := nettypes.Inspect{
		Name: nw.Name, ID: nw.ID, Created: nw.Created, Scope: "local", Driver: nw.Driver, EnableIPv4: nw.Addressed(),
		Internal: nw.Internal, Attachable: nw.Attachable, Containers: map[string]nettypes.EndpointResource{},
		Options: nw.Options, Labels: nw.Labels, IPAM: nettypes.IPAM{Driver: "default", Config: []nettypes.IPAMConfig{}},
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if nw.Subnet != "" {
		out.IPAM.Config = append(out.IPAM.Config, nettypes.IPAMConfig{Subnet: nw.Subnet, IPRange: nw.IPRange, Gateway: nw.Gateway})
	}
	for id, ep := range nw.Endpoints {
		res := nettypes.EndpointResource{Name: ep.Container, EndpointID: endpointID(network.Attached{Network: nw, Endpoint: ep}), MacAddress: ep.MAC}
		if ep.IP != "" {
			if p, err := nw.Pool(); err == nil {
				res.IPv4Address = fmt.Sprintf("%s/%d", ep.IP, p.Subnet.Bits())
			}
		}
		out.Containers[id] = res
	}
	return out
}

// networkFilters are the keys docker network ls and prune filter on.
func networkFilters() map[string]bool {
	return map[string]bool{"name": true, "id": true, "driver": true, "label": true, "label!": true, "type": true, "scope": true, "dangling": true}
}

// ListNetworks answers GET /networks.
func (d *Daemon) ListNetworks(_ context.Context, f filters.Args) ([]nettypes.Summary, error) {
	if err := f.Validate(networkFilters()); err != nil {
		return nil, badFilter("%v", err)
	}
	for _, t := range f.Get("type") {
		if t != "custom" && t != "builtin" {
			return nil, badFilter("invalid filter: 'type'='%s': want custom or builtin", t)
		}
	}
	if _, err := f.GetBoolOrDefault("dangling", false); err != nil {
		return nil, badFilter("%v", err)
	}
	all, err := d.nets.List()
	if err != nil {
		return nil, err
	}
	out := []nettypes.Summary{}
	for _, nw := range all {
		if matchNetwork(f, nw) {
			out = append(out, inspectNetwork(nw))
		}
	}
	return out, nil
}

// matchNetwork says nw passes the filters: name and id by substring and
// prefix as in dockerd, driver, label, type (custom or builtin), scope
// and dangling (a user network without endpoints).
func matchNetwork(f filters.Args, nw network.Record) bool {
	if f.Contains("name") && !slices.ContainsFunc(f.Get("name"), func(n string) bool { return strings.Contains(nw.Name, n) }) {
		return false
	}
	if f.Contains("id") && !slices.ContainsFunc(f.Get("id"), func(n string) bool { return strings.HasPrefix(nw.ID, n) }) {
		return false
	}
	if f.Contains("driver") && !f.ExactMatch("driver", nw.Driver) {
		return false
	}
	if f.Contains("scope") && !f.ExactMatch("scope", "local") {
		return false
	}
	if f.Contains("dangling") {
		want, _ := f.GetBoolOrDefault("dangling", false) // checked by ListNetworks
		if want != (!nw.Predefined() && len(nw.Endpoints) == 0) {
			return false
		}
	}
	if f.Contains("type") {
		kind := "custom"
		if nw.Predefined() {
			kind = "builtin"
		}
		if !f.ExactMatch("type", kind) {
			return false
		}
	}
	return labelsMatch(f, nw.Labels)
}

// InspectNetwork answers GET /networks/{id}.
func (d *Daemon) InspectNetwork(_ context.Context, ref string) (nettypes.Inspect, error) {
	nw, err := d.nets.Get(ref)
	if err != nil {
		return nettypes.Inspect{}, err
	}
	return inspectNetwork(nw), nil
}

// CreateNetwork answers POST /networks/create: a bridge network with its
// own Linux bridge (made when a container first needs it), or a macvlan
// network on an existing parent interface.
func (d *Daemon) CreateNetwork(_ context.Context, req nettypes.CreateRequest) (nettypes.CreateResponse, error) {
	o := network.CreateOptions{Name: req.Name, Driver: req.Driver, Internal: req.Internal, Attachable: req.Attachable,
		Labels: req.Labels, Options: req.Options, BridgeName: userBridgeName}
	switch {
	case req.ConfigOnly || req.ConfigFrom != nil:
		return nettypes.CreateResponse{}, fmt.Errorf("--config-only and --config-from networks are not supported: %w", drivers.ErrNotImplemented)
	case req.Ingress || req.Scope != "" && req.Scope != "local":
		return nettypes.CreateResponse{}, fmt.Errorf("swarm networks (--ingress, --scope %s) are not supported: layerlabd's networks are local: %w", req.Scope, drivers.ErrNotImplemented)
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return nettypes.CreateResponse{}, fmt.Errorf("networks without IPv4 are not supported: %w", drivers.ErrNotImplemented)
	}
	if req.EnableIPv6 != nil && *req.EnableIPv6 {
		return nettypes.CreateResponse{}, fmt.Errorf("--ipv6: IPv6 networks are not supported: %w", drivers.ErrNotImplemented)
	}
	if req.IPAM != nil {
		if req.IPAM.Driver != "" && req.IPAM.Driver != "default" {
			return nettypes.CreateResponse{}, fmt.Errorf("IPAM driver %q is not supported (default is): %w", req.IPAM.Driver, drivers.ErrNotImplemented)
		}
		switch len(req.IPAM.Config) {
		case 0:
		case 1:
			c := req.IPAM.Config[0]
			o.Subnet, o.IPRange, o.Gateway = c.Subnet, c.IPRange, c.Gateway
		default:
			return nettypes.CreateResponse{}, fmt.Errorf("%d IPAM configs: one subnet per network is supported: %w", len(req.IPAM.Config), drivers.ErrNotImplemented)
		}
	}
	if name := req.Options["com.docker.network.bridge.name"]; name != "" {
		if len(name) > 15 {
			return nettypes.CreateResponse{}, fmt.Errorf("bridge name %q is longer than the kernel's 15 characters: %w", name, drivers.ErrInvalidArgument)
		}
		o.BridgeName = func(string) string { return name }
	}
	if parent := req.Options["parent"]; req.Driver == network.DriverMacvlan && parent != "" {
		if names, err := d.host.Links(parent); err != nil || !slices.Contains(names, parent) {
			return nettypes.CreateResponse{}, fmt.Errorf("macvlan parent interface %s does not exist in the daemon's network namespace (%v): %w", parent, err, drivers.ErrInvalidArgument)
		}
	}
	nw, err := d.nets.Create(o)
	if err != nil {
		return nettypes.CreateResponse{}, err
	}
	d.networkEvent(eventtypes.ActionCreate, nw, "")
	return nettypes.CreateResponse{ID: nw.ID, Warning: ""}, nil
}

// forbidden maps the network store's refusals to dockerd's 403.
func forbidden(err error) error {
	if errors.Is(err, network.ErrInUse) || errors.Is(err, network.ErrPredefined) {
		return fmt.Errorf("%w: %w", err, api.ErrForbidden)
	}
	return err
}

// RemoveNetwork answers DELETE /networks/{id}: a user network without
// endpoints, with its bridge.
func (d *Daemon) RemoveNetwork(_ context.Context, ref string) error {
	nw, err := d.nets.Delete(ref)
	if err != nil {
		return forbidden(err)
	}
	if err := d.dns.Stop(nw.ID); err != nil {
		d.cfg.Log.Error("stopping a network's DNS server failed", "network", nw.Name, "err", err)
	}
	if nw.BridgeName != "" {
		if err := d.host.DeleteLink(nw.BridgeName); err != nil {
			d.cfg.Log.Error("removing a network's bridge failed; ip link del it", "bridge", nw.BridgeName, "err", err)
		}
	}
	if d.nat != nil {
		if err := errors.Join(d.nat.Unmasquerade(nw.ID), d.nat.Unisolate(nw.ID)); err != nil {
			d.cfg.Log.Error("removing a network's masquerade and isolation rules failed; the next daemon start sweeps them", "network", nw.Name, "err", err)
		}
	}
	d.networkEvent(eventtypes.ActionDestroy, nw, "")
	return nil
}

// PruneNetworks answers POST /networks/prune: user networks without
// endpoints that the until and label filters select.
func (d *Daemon) PruneNetworks(ctx context.Context, f filters.Args) (nettypes.PruneReport, error) {
	rep := nettypes.PruneReport{NetworksDeleted: []string{}}
	until, err := pruneFilters(f)
	if err != nil {
		return rep, err
	}
	all, err := d.nets.List()
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, nw := range all {
		if nw.Predefined() || len(nw.Endpoints) > 0 || !labelsMatch(f, nw.Labels) || !until.IsZero() && !nw.Created.Before(until) {
			continue
		}
		if err := d.RemoveNetwork(ctx, nw.ID); err != nil {
			if !errors.Is(err, api.ErrForbidden) {
				errs = append(errs, err)
			}
			continue
		}
		rep.NetworksDeleted = append(rep.NetworksDeleted, nw.Name)
	}
	return rep, errors.Join(errs...)
}

// ConnectNetwork answers POST /networks/{id}/connect: the endpoint is
// recorded, and a running container gets its interface at once.
func (d *Daemon) ConnectNetwork(_ context.Context, ref string, o nettypes.ConnectOptions) error {
	nw, err := d.nets.Get(ref)
	if err != nil {
		return err
	}
	r, err := d.ctrs.Get(o.Container)
	if err != nil {
		return err
	}
	mode := string(r.HostConfig.NetworkMode)
	switch {
	case !nw.Addressed():
		return fmt.Errorf("container cannot be disconnected from or connected to the %s network: %w", nw.Name, api.ErrForbidden)
	case mode == network.HostNetwork || strings.HasPrefix(mode, "container:"):
		return fmt.Errorf("container %s shares another network namespace (%s): it cannot be connected to networks: %w", r.Name, mode, api.ErrForbidden)
	case mode == network.NoneNetwork:
		return fmt.Errorf("container %s runs with network none: it cannot be connected to networks: %w", r.Name, api.ErrForbidden)
	}
	l := d.live(r.ID)
	l.mu.Lock()
	defer l.mu.Unlock()
	nw, ep, err := d.connect(nw, &r, o.EndpointConfig)
	if err != nil {
		return err
	}
	if l.c != nil {
		if err := d.plugRunning(r.ID, nw, ep); err != nil {
			_, _, derr := d.nets.Disconnect(nw.ID, r.ID)
			return errors.Join(fmt.Errorf("connecting the running container %s to %s: %w", r.Name, nw.Name, err), derr)
		}
	}
	d.networkEvent(eventtypes.ActionConnect, nw, r.ID)
	return nil
}

// plugRunning adds the interface of a new endpoint to a running container.
func (d *Daemon) plugRunning(id string, nw network.Record, ep network.Endpoint) error {
	path := d.netnsPath(id)
	if _, err := os.Stat(path); err != nil {
		return err
	}
	ifname, err := network.FreeIfName(path)
	if err != nil {
		return err
	}
	return d.plug(id, nw, ep, ifname, false)
}

// DisconnectNetwork answers POST /networks/{id}/disconnect: the endpoint
// and its address go, and a running container loses the interface.
func (d *Daemon) DisconnectNetwork(_ context.Context, ref string, o nettypes.DisconnectOptions) error {
	nw, err := d.nets.Get(ref)
	if err != nil {
		return err
	}
	if !nw.Addressed() {
		return fmt.Errorf("container cannot be disconnected from the %s network: %w", nw.Name, api.ErrForbidden)
	}
	r, err := d.ctrs.Get(o.Container)
	if err != nil {
		return err
	}
	l := d.live(r.ID)
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ep, err := d.nets.Disconnect(nw.ID, r.ID)
	if err != nil {
		return err
	}
	if string(r.HostConfig.NetworkMode) == nw.Name {
		// Its next start has no primary network; dockerd leaves the
		// mode as it is too, and the start then has fewer interfaces.
		d.cfg.Log.Info("container disconnected from its primary network", "container", r.ID, "network", nw.Name)
	}
	if l.c != nil {
		unplug := func() error { return d.host.DeleteLink(network.VethName(r.ID, nw.ID)) }
		if nw.Driver == network.DriverMacvlan {
			unplug = func() error { return network.DeleteByMAC(d.netnsPath(r.ID), ep.MAC) }
		}
		if err := unplug(); err != nil {
			return fmt.Errorf("removing the interface of %s on %s: %w", r.Name, nw.Name, err)
		}
	}
	d.networkEvent(eventtypes.ActionDisconnect, nw, r.ID)
	return nil
}
