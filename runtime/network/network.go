// Package network is layerlabd's container networking: network records
// with their address plans and endpoints (one per container attached) in
// the daemon's bbolt file, so allocations survive a restart; the kernel
// side through netlink (a bridge per network, a veth pair per endpoint,
// a network namespace per container kept as a bind-mounted nsfs file);
// the /etc/hosts, /etc/resolv.conf and /etc/hostname a container gets;
// published ports through a userland proxy or nftables DNAT; and bridge
// networks' outbound NAT (nftables masquerade).
package network

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
)

// The drivers a network record may name.
const (
	DriverBridge  = "bridge"
	DriverMacvlan = "macvlan" // on a parent interface given as -o parent=
	DriverHost    = "host"
	DriverNull    = "null" // the "none" network
)

// The predefined networks' names; they cannot be removed.
const (
	DefaultBridge = "bridge"
	HostNetwork   = "host"
	NoneNetwork   = "none"
)

// OptionMasquerade is dockerd's bridge option that turns a network's
// outbound NAT off with "false"; inspect shows it as given, and on the
// default bridge as "true".
const OptionMasquerade = "com.docker.network.bridge.enable_ip_masquerade"

// defaultSubnet is the default bridge's; userPool is where user networks
// without --subnet get a /24. Neither is Docker's 172.17/16, so a
// layerlabd beside a dockerd does not route into docker0's range.
const (
	defaultSubnet = "172.29.0.0/16"
	userPool      = "172.30.0.0/16"
)

// Errors callers test with errors.Is.
var (
	ErrNoSuchNetwork = fmt.Errorf("no such network: %w", drivers.ErrNotFound)
	ErrNameInUse     = fmt.Errorf("network name in use: %w", drivers.ErrAlreadyExists)
	// ErrInUse and ErrPredefined are refusals dockerd answers with 403;
	// the daemon maps them.
	ErrInUse      = errors.New("network has active endpoints")
	ErrPredefined = errors.New("predefined network")
)

// Record is one network.
type Record struct {
	ID, Name, Driver string
	Created          time.Time
	// Subnet, IPRange and Gateway are the address plan (bridge networks
	// only); UserSubnet says the user chose the subnet.
	Subnet, IPRange, Gateway string `json:",omitempty"`
	UserSubnet               bool   `json:",omitempty"`
	BridgeName               string `json:",omitempty"` // the Linux bridge
	Internal, Attachable     bool
	Labels, Options          map[string]string
	Endpoints                map[string]Endpoint // by container ID
}

// Endpoint is a container's attachment to a network.
type Endpoint struct {
	ContainerID, Container string // ID and name
	IP                     string // empty on host and none
	MAC                    string `json:",omitempty"`
	Aliases                []string
	Static                 bool      `json:",omitempty"` // --ip
	Created                time.Time // orders a container's interfaces
}

// Addressed says containers on r get addresses from its pool: bridge and
// macvlan networks.
func (r Record) Addressed() bool { return r.Driver == DriverBridge || r.Driver == DriverMacvlan }

// Masquerades says containers on r reach beyond the daemon's namespace
// through outbound NAT: a bridge network, not --internal, without
// OptionMasquerade false (Create refused any value ParseBool does not
// take, so one that fails here is none).
func (r Record) Masquerades() bool {
	if r.Driver != DriverBridge || r.Internal {
		return false
	}
	on, err := strconv.ParseBool(r.Options[OptionMasquerade])
	return on || err != nil
}

// Pool is the record's address plan.
func (r Record) Pool() (Pool, error) { return ParsePool(r.Subnet, r.IPRange, r.Gateway) }

// Predefined says r is bridge, host or none.
func (r Record) Predefined() bool {
	return slices.Contains([]string{DefaultBridge, HostNetwork, NoneNetwork}, r.Name)
}

var bucketNetworks = []byte("networks")

// Store keeps the network records in db, which its caller owns.
type Store struct{ db *bolt.DB }

// NewStore makes the bucket and the predefined networks: host, none and,
// unless bridge is "" (dockerd's --bridge none), the default bridge on the
// Linux bridge of that name.
func NewStore(db *bolt.DB, bridge string) (*Store, error) {
	s := &Store{db: db}
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketNetworks)
		if err != nil {
			return err
		}
		all, err := list(b)
		if err != nil {
			return err
		}
		have := func(name string) bool {
			return slices.ContainsFunc(all, func(r Record) bool { return r.Name == name })
		}
		now := time.Now().UTC()
		for _, r := range []Record{
			{Name: HostNetwork, Driver: DriverHost},
			{Name: NoneNetwork, Driver: DriverNull},
			{Name: DefaultBridge, Driver: DriverBridge, Subnet: defaultSubnet, BridgeName: bridge,
				Options: map[string]string{"com.docker.network.bridge.name": bridge, "com.docker.network.bridge.default_bridge": "true",
					OptionMasquerade: "true"}},
		} {
			if r.Name == DefaultBridge && have(r.Name) {
				if err := masqueradeOption(b, all); err != nil {
					return err
				}
			}
			if have(r.Name) || (r.Name == DefaultBridge && bridge == "") {
				continue
			}
			if r.Driver == DriverBridge {
				p, err := ParsePool(r.Subnet, "", "")
				if err != nil {
					return err
				}
				r.Gateway = p.Gateway.String()
			}
			r.ID, r.Created = newID(), now
			if err := put(b, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network store: %w", err)
	}
	return s, nil
}

// masqueradeOption gives a default bridge stored by a layerlabd without
// outbound NAT the option dockerd's inspect shows.
func masqueradeOption(b *bolt.Bucket, all []Record) error {
	i := slices.IndexFunc(all, func(r Record) bool { return r.Name == DefaultBridge })
	if _, ok := all[i].Options[OptionMasquerade]; ok {
		return nil
	}
	r := all[i]
	if r.Options == nil {
		r.Options = map[string]string{}
	}
	r.Options[OptionMasquerade] = "true"
	return put(b, r)
}

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func put(b *bolt.Bucket, r Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.ID), data)
}

func list(b *bolt.Bucket) ([]Record, error) {
	var out []Record
	err := b.ForEach(func(_, v []byte) error {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	slices.SortFunc(out, func(a, b Record) int { return a.Created.Compare(b.Created) })
	return out, err
}

// List returns every network, oldest first.
func (s *Store) List() ([]Record, error) {
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = list(tx.Bucket(bucketNetworks))
		return err
	})
	return out, err
}

// find resolves ref as dockerd does: a full ID, then a name, then a
// unique ID prefix.
func find(b *bolt.Bucket, ref string) (Record, error) {
	all, err := list(b)
	if err != nil {
		return Record{}, err
	}
	for _, match := range []func(Record) bool{
		func(r Record) bool { return r.ID == ref },
		func(r Record) bool { return r.Name == ref },
	} {
		if i := slices.IndexFunc(all, match); i >= 0 {
			return all[i], nil
		}
	}
	var found []Record
	for _, r := range all {
		if ref != "" && strings.HasPrefix(r.ID, ref) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return Record{}, fmt.Errorf("network %s not found: %w", ref, ErrNoSuchNetwork)
	}
	return Record{}, fmt.Errorf("network %s is ambiguous (%d matches found): give more of its ID: %w", ref, len(found), drivers.ErrInvalidArgument)
}

// Get finds a network by ID, name or unique ID prefix.
func (s *Store) Get(ref string) (Record, error) {
	var r Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = find(tx.Bucket(bucketNetworks), ref)
		return err
	})
	return r, err
}

// validName is dockerd's rule for network names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// CreateOptions is a user network's create request, validated here
// because any of it may come from a raw API request.
type CreateOptions struct {
	Name, Driver             string
	Subnet, IPRange, Gateway string
	Internal, Attachable     bool
	Labels, Options          map[string]string
	// BridgeName names the Linux bridge of the network with this ID.
	BridgeName func(id string) string
}

// Create stores a new user-defined bridge network.
func (s *Store) Create(o CreateOptions) (Record, error) {
	if !validName.MatchString(o.Name) {
		return Record{}, fmt.Errorf("invalid network name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed: %w", o.Name, drivers.ErrInvalidArgument)
	}
	if o.Driver == "" {
		o.Driver = DriverBridge
	}
	switch o.Driver {
	case DriverBridge:
		if v, ok := o.Options[OptionMasquerade]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				return Record{}, fmt.Errorf("-o %s=%s: want true or false: %w", OptionMasquerade, v, drivers.ErrInvalidArgument)
			}
		}
	case DriverMacvlan:
		if o.Options["parent"] == "" {
			return Record{}, fmt.Errorf("macvlan network %s: give its parent interface with -o parent=IFACE (layerlabd makes no dummy parent): %w", o.Name, drivers.ErrInvalidArgument)
		}
		o.BridgeName = func(string) string { return "" }
	default:
		return Record{}, fmt.Errorf("network driver %q is not supported (bridge and macvlan are): %w", o.Driver, drivers.ErrNotImplemented)
	}
	if o.Subnet == "" && (o.IPRange != "" || o.Gateway != "") {
		return Record{}, fmt.Errorf("--ip-range and --gateway need a --subnet: %w", drivers.ErrInvalidArgument)
	}
	r := Record{ID: newID(), Name: o.Name, Driver: o.Driver, Created: time.Now().UTC(), Internal: o.Internal,
		Attachable: o.Attachable, Labels: o.Labels, Options: o.Options, UserSubnet: o.Subnet != ""}
	r.BridgeName = o.BridgeName(r.ID)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNetworks)
		all, err := list(b)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(all, func(x Record) bool { return x.Name == o.Name }); i >= 0 {
			return fmt.Errorf("network with name %s already exists: %w", o.Name, ErrNameInUse)
		}
		var taken []netip.Prefix
		for _, x := range all {
			if p, err := netip.ParsePrefix(x.Subnet); err == nil {
				taken = append(taken, p)
			}
		}
		p, err := pickPool(o, taken)
		if err != nil {
			return err
		}
		r.Subnet, r.Gateway = p.Subnet.String(), p.Gateway.String()
		if o.IPRange != "" {
			r.IPRange = p.Range.String()
		}
		return put(b, r)
	})
	return r, err
}

// pickPool is the request's pool, refused when it overlaps a taken
// subnet, or the first free /24 of userPool.
func pickPool(o CreateOptions, taken []netip.Prefix) (Pool, error) {
	overlaps := func(p netip.Prefix) bool {
		return slices.ContainsFunc(taken, func(t netip.Prefix) bool { return t.Overlaps(p) })
	}
	if o.Subnet != "" {
		p, err := ParsePool(o.Subnet, o.IPRange, o.Gateway)
		if err != nil {
			return p, err
		}
		if overlaps(p.Subnet) {
			return p, fmt.Errorf("subnet %s overlaps another network's: pick another --subnet: %w", p.Subnet, drivers.ErrAlreadyExists)
		}
		return p, nil
	}
	base := netip.MustParsePrefix(userPool).Addr().As4()
	for i := 0; i < 256; i++ {
		base[2] = byte(i)
		sub := netip.PrefixFrom(netip.AddrFrom4(base), 24)
		if !overlaps(sub) {
			return ParsePool(sub.String(), "", "")
		}
	}
	return Pool{}, fmt.Errorf("every /24 of %s is taken: remove a network or give --subnet: %w", userPool, drivers.ErrUnavailable)
}

// Delete removes a user network without endpoints.
func (s *Store) Delete(ref string) (Record, error) {
	var r Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNetworks)
		var err error
		if r, err = find(b, ref); err != nil {
			return err
		}
		if r.Predefined() {
			return fmt.Errorf("%s is a pre-defined network and cannot be removed: %w", r.Name, ErrPredefined)
		}
		if len(r.Endpoints) > 0 {
			var names []string
			for _, e := range r.Endpoints {
				names = append(names, e.Container)
			}
			slices.Sort(names)
			return fmt.Errorf("error while removing network: network %s id %s has active endpoints (%s): disconnect or remove them first: %w", r.Name, r.ID, strings.Join(names, ", "), ErrInUse)
		}
		return b.Delete([]byte(r.ID))
	})
	return r, err
}

// Attach asks for a container's endpoint on a network.
type Attach struct {
	ContainerID, Container string
	IP                     string // --ip; "" picks one
	Aliases                []string
}

// Connect adds the container's endpoint to the network ref, allocating
// its address. A container already there is refused.
func (s *Store) Connect(ref string, a Attach) (Record, Endpoint, error) {
	var r Record
	var ep Endpoint
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNetworks)
		var err error
		if r, err = find(b, ref); err != nil {
			return err
		}
		if _, ok := r.Endpoints[a.ContainerID]; ok {
			return fmt.Errorf("endpoint with name %s already exists in network %s: %w", a.Container, r.Name, drivers.ErrAlreadyExists)
		}
		ep = Endpoint{ContainerID: a.ContainerID, Container: a.Container, Aliases: slices.Clone(a.Aliases), Static: a.IP != "", Created: time.Now().UTC()}
		if r.Addressed() {
			if a.IP != "" && !r.UserSubnet {
				return fmt.Errorf("user specified IP address is supported only when connecting to networks with user configured subnets: %w", drivers.ErrInvalidArgument)
			}
			p, err := r.Pool()
			if err != nil {
				return err
			}
			used := map[netip.Addr]bool{}
			for _, e := range r.Endpoints {
				if ip, err := netip.ParseAddr(e.IP); err == nil {
					used[ip] = true
				}
			}
			ip, err := p.Allocate(used, a.IP)
			if err != nil {
				return err
			}
			ep.IP, ep.MAC = ip.String(), MAC(ip)
		} else if a.IP != "" || len(a.Aliases) > 0 {
			return fmt.Errorf("network %s takes no --ip or --network-alias: %w", r.Name, drivers.ErrInvalidArgument)
		}
		if r.Endpoints == nil {
			r.Endpoints = map[string]Endpoint{}
		}
		r.Endpoints[a.ContainerID] = ep
		return put(b, r)
	})
	return r, ep, err
}

// MAC is the address an endpoint's interface gets: dockerd's 02:42
// followed by the IPv4 address, so it is unique on the bridge.
func MAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// Disconnect removes the container's endpoint from the network ref and
// returns what it was.
func (s *Store) Disconnect(ref, containerID string) (Record, Endpoint, error) {
	var r Record
	var ep Endpoint
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNetworks)
		var err error
		if r, err = find(b, ref); err != nil {
			return err
		}
		var ok bool
		if ep, ok = r.Endpoints[containerID]; !ok {
			return fmt.Errorf("container %s is not connected to network %s: %w", containerID, r.Name, drivers.ErrFailedPrecondition)
		}
		delete(r.Endpoints, containerID)
		return put(b, r)
	})
	return r, ep, err
}

// Attached is one of a container's endpoints with its network.
type Attached struct {
	Network  Record
	Endpoint Endpoint
}

// Of returns the container's endpoints, in the order they were made.
func (s *Store) Of(containerID string) ([]Attached, error) {
	all, err := s.List()
	if err != nil {
		return nil, err
	}
	var out []Attached
	for _, r := range all {
		if ep, ok := r.Endpoints[containerID]; ok {
			out = append(out, Attached{Network: r, Endpoint: ep})
		}
	}
	slices.SortFunc(out, func(a, b Attached) int { return a.Endpoint.Created.Compare(b.Endpoint.Created) })
	return out, nil
}

// Rename gives the container's endpoints its new name.
func (s *Store) Rename(containerID, name string) error {
	return s.eachEndpoint(containerID, func(r *Record, ep Endpoint) {
		ep.Container = name
		r.Endpoints[containerID] = ep
	})
}

// Release removes the container from every network, freeing its
// addresses; the daemon calls it when the container is removed.
func (s *Store) Release(containerID string) error {
	return s.eachEndpoint(containerID, func(r *Record, _ Endpoint) {
		delete(r.Endpoints, containerID)
	})
}

// eachEndpoint calls fn for every network the container is on, in one
// transaction, and stores what fn made of each network.
func (s *Store) eachEndpoint(containerID string, fn func(r *Record, ep Endpoint)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketNetworks)
		all, err := list(b)
		if err != nil {
			return err
		}
		for _, r := range all {
			if ep, ok := r.Endpoints[containerID]; ok {
				fn(&r, ep)
				if err := put(b, r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
