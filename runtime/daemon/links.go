package daemon

import (
	"fmt"
	"net/netip"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/runtime/containers"
	"github.com/layerlab/layerlab/runtime/network"
)

// checkLinks checks the --link targets of rec, on network nw, and stores
// them as dockerd shows them, /TARGET:/NAME/ALIAS.
func (d *Daemon) checkLinks(rec *containers.Record, nw network.Record) error {
	hc := rec.HostConfig
	if len(hc.Links) > 0 && !nw.Addressed() {
		return fmt.Errorf("conflicting options: %s type networking can't be used with links; links need a bridge network: %w", nw.Name, drivers.ErrInvalidArgument)
	}
	for i, l := range hc.Links {
		name, alias, err := network.ParseLink(l)
		if err != nil {
			return err
		}
		target, err := d.ctrs.Get(name)
		if err != nil {
			// 400, not 404: the CLI takes a 404 from create for a
			// missing image and tries to pull it.
			return fmt.Errorf("could not get container for %s: %v: %w", name, err, drivers.ErrInvalidArgument)
		}
		hc.Links[i] = "/" + target.Name + ":/" + rec.Name + "/" + alias
	}
	return nil
}

// linked resolves r's links at its start: the /etc/hosts entries and the
// environment Docker's legacy links give. A target must be running.
func (d *Daemon) linked(r containers.Record) ([]network.HostEntry, []string, error) {
	var hosts []network.HostEntry
	var env []string
	for _, l := range r.HostConfig.Links {
		name, alias, err := network.ParseLink(l)
		if err != nil {
			return nil, nil, err
		}
		target, err := d.ctrs.Get(name)
		if err != nil {
			return nil, nil, fmt.Errorf("link %s: %w", l, err)
		}
		if target.State.Status != containers.Running {
			return nil, nil, fmt.Errorf("cannot link to a non running container: /%s AS /%s/%s: start it first: %w", target.Name, r.Name, alias, drivers.ErrFailedPrecondition)
		}
		eps, err := d.nets.Of(target.ID)
		if err != nil {
			return nil, nil, err
		}
		var ip netip.Addr
		for _, a := range eps {
			if a.Endpoint.IP != "" {
				ip, _ = netip.ParseAddr(a.Endpoint.IP)
				break
			}
		}
		if !ip.IsValid() {
			return nil, nil, fmt.Errorf("link %s: container %s has no address on a bridge network: %w", l, target.Name, drivers.ErrFailedPrecondition)
		}
		hosts = append(hosts, network.HostEntry{IP: ip.String(), Names: []string{alias, target.ID[:12], target.Name}})
		env = append(env, network.LinkEnv(r.Name, alias, network.Linked{Name: target.Name, IP: ip, Exposed: target.Config.ExposedPorts, Env: target.Config.Env})...)
	}
	return hosts, env, nil
}
