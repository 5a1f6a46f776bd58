package network

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
)

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func bridgeName(id string) string { return "llbr-" + id[:10] }

// TestStore walks a network's life: the predefined networks, a user
// network with its address plan, endpoints allocated and persisted across
// a reopen (a daemon restart), the refusals, release and removal.
func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	s, err := NewStore(db, "layerlab0")
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.List()
	if err != nil || len(all) != 3 {
		t.Fatalf("predefined networks: %+v, %v", all, err)
	}
	br, err := s.Get("bridge")
	if err != nil || br.Subnet != defaultSubnet || br.Gateway != "172.29.0.1" || br.BridgeName != "layerlab0" || !br.Predefined() {
		t.Fatalf("bridge: %+v, %v", br, err)
	}
	n1, err := s.Create(CreateOptions{Name: "net1", Subnet: "10.9.0.0/24", IPRange: "10.9.0.64/26", Labels: map[string]string{"a": "b"}, BridgeName: bridgeName})
	if err != nil || n1.Gateway != "10.9.0.1" || n1.IPRange != "10.9.0.64/26" || !n1.UserSubnet {
		t.Fatalf("create net1: %+v, %v", n1, err)
	}
	auto, err := s.Create(CreateOptions{Name: "auto", BridgeName: bridgeName})
	if err != nil || auto.Subnet != "172.30.0.0/24" || auto.UserSubnet {
		t.Fatalf("create auto: %+v, %v", auto, err)
	}
	for _, c := range []struct {
		o    CreateOptions
		want error
	}{
		{CreateOptions{Name: "net1"}, drivers.ErrAlreadyExists},
		{CreateOptions{Name: "x", Subnet: "10.9.0.128/25"}, drivers.ErrAlreadyExists},
		{CreateOptions{Name: "x", Subnet: "172.29.5.0/24"}, drivers.ErrAlreadyExists},
		{CreateOptions{Name: "bad name"}, drivers.ErrInvalidArgument},
		{CreateOptions{Name: "x", Gateway: "10.0.0.1"}, drivers.ErrInvalidArgument},
		{CreateOptions{Name: "x", Driver: "overlay"}, drivers.ErrNotImplemented},
		{CreateOptions{Name: "x", Driver: "macvlan"}, drivers.ErrInvalidArgument},
	} {
		c.o.BridgeName = bridgeName
		if _, err := s.Create(c.o); !errors.Is(err, c.want) {
			t.Errorf("create %+v: %v, want %v", c.o, err, c.want)
		}
	}
	_, e1, err := s.Connect("net1", Attach{ContainerID: strings.Repeat("a", 64), Container: "one", Aliases: []string{"al"}})
	if err != nil || e1.IP != "10.9.0.64" || e1.MAC != "02:42:0a:09:00:40" {
		t.Fatalf("connect one: %+v, %v", e1, err)
	}
	if _, _, err := s.Connect("net1", Attach{ContainerID: strings.Repeat("a", 64), Container: "one"}); !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Errorf("connect one twice: %v", err)
	}
	if _, _, err := s.Connect("bridge", Attach{ContainerID: strings.Repeat("b", 64), Container: "two", IP: "172.29.0.9"}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("static IP on the default bridge: %v", err)
	}
	if _, _, err := s.Connect("net1", Attach{ContainerID: strings.Repeat("b", 64), Container: "two", IP: "10.9.0.64"}); !errors.Is(err, drivers.ErrAlreadyExists) {
		t.Errorf("a taken static IP: %v", err)
	}
	if _, e2, err := s.Connect(n1.ID[:6], Attach{ContainerID: strings.Repeat("b", 64), Container: "two", IP: "10.9.0.5"}); err != nil || e2.IP != "10.9.0.5" || !e2.Static {
		t.Fatalf("connect two by ID prefix with --ip: %+v, %v", e2, err)
	}
	if _, err := s.Delete("net1"); !errors.Is(err, ErrInUse) {
		t.Errorf("delete net1 in use: %v", err)
	}
	if _, err := s.Delete("host"); !errors.Is(err, ErrPredefined) {
		t.Errorf("delete host: %v", err)
	}
	if _, err := s.Get("nosuch"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("get nosuch: %v", err)
	}

	// A restart: the allocations are still there.
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	if s, err = NewStore(db, "layerlab0"); err != nil {
		t.Fatal(err)
	}
	of, err := s.Of(strings.Repeat("a", 64))
	if err != nil || len(of) != 1 || of[0].Network.Name != "net1" || of[0].Endpoint.IP != "10.9.0.64" {
		t.Fatalf("endpoints of one after a reopen: %+v, %v", of, err)
	}
	if _, e3, err := s.Connect("net1", Attach{ContainerID: strings.Repeat("c", 64), Container: "three"}); err != nil || e3.IP != "10.9.0.65" {
		t.Fatalf("connect three after a reopen: %+v, %v", e3, err)
	}
	if err := s.Rename(strings.Repeat("c", 64), "renamed"); err != nil {
		t.Fatal(err)
	}
	if of, _ := s.Of(strings.Repeat("c", 64)); len(of) != 1 || of[0].Endpoint.Container != "renamed" {
		t.Errorf("after a rename: %+v", of)
	}
	if _, _, err := s.Disconnect("net1", strings.Repeat("c", 64)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Disconnect("net1", strings.Repeat("c", 64)); !errors.Is(err, drivers.ErrFailedPrecondition) {
		t.Errorf("disconnect twice: %v", err)
	}
	for _, id := range []string{strings.Repeat("a", 64), strings.Repeat("b", 64)} {
		if err := s.Release(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete("net1"); err != nil {
		t.Errorf("delete net1 once empty: %v", err)
	}
	if all, _ := s.List(); len(all) != 4 {
		t.Errorf("%d networks left, want the 3 predefined and auto", len(all))
	}
}

// TestStoreNoBridge: --bridge none makes no default bridge network.
func TestStoreNoBridge(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "state.db"))
	defer db.Close()
	s, err := NewStore(db, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("bridge"); !errors.Is(err, drivers.ErrNotFound) {
		t.Errorf("bridge with --bridge none: %v", err)
	}
}

// TestMasquerades: bridge networks get outbound NAT unless --internal or
// -o com.docker.network.bridge.enable_ip_masquerade=false; the default
// bridge shows the option "true" as dockerd's does (also one stored by a
// layerlabd that did not write it), a user network only what it was given,
// and a value that is no boolean is refused.
func TestMasquerades(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db := openDB(t, path)
	s, err := NewStore(db, "layerlab0")
	if err != nil {
		t.Fatal(err)
	}
	br, err := s.Get(DefaultBridge)
	if err != nil || br.Options[OptionMasquerade] != "true" || !br.Masquerades() {
		t.Fatalf("default bridge: %+v, %v", br, err)
	}
	for _, c := range []struct {
		o    CreateOptions
		want bool
	}{
		{CreateOptions{Name: "plain"}, true},
		{CreateOptions{Name: "on", Options: map[string]string{OptionMasquerade: "1"}}, true},
		{CreateOptions{Name: "off", Options: map[string]string{OptionMasquerade: "false"}}, false},
		{CreateOptions{Name: "internal", Internal: true}, false},
		{CreateOptions{Name: "mv", Driver: DriverMacvlan, Subnet: "10.99.0.0/24", Options: map[string]string{"parent": "eth0"}}, false},
	} {
		c.o.BridgeName = bridgeName
		r, err := s.Create(c.o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Masquerades() != c.want {
			t.Errorf("network %s masquerades: %v, want %v", r.Name, r.Masquerades(), c.want)
		}
		if _, ok := r.Options[OptionMasquerade]; ok != (c.o.Options[OptionMasquerade] != "") {
			t.Errorf("network %s options %v: the option should be there only when given", r.Name, r.Options)
		}
	}
	if _, err := s.Create(CreateOptions{Name: "bad", Options: map[string]string{OptionMasquerade: "maybe"}, BridgeName: bridgeName}); !errors.Is(err, drivers.ErrInvalidArgument) {
		t.Errorf("enable_ip_masquerade=maybe: %v, want ErrInvalidArgument", err)
	}

	// A default bridge stored without the option gets it at the next open.
	br.Options = map[string]string{"com.docker.network.bridge.name": "layerlab0"}
	if err := db.Update(func(tx *bolt.Tx) error { return put(tx.Bucket(bucketNetworks), br) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db = openDB(t, path)
	defer db.Close()
	if s, err = NewStore(db, "layerlab0"); err != nil {
		t.Fatal(err)
	}
	if br, err = s.Get(DefaultBridge); err != nil || br.Options[OptionMasquerade] != "true" || br.Options["com.docker.network.bridge.name"] != "layerlab0" {
		t.Errorf("default bridge after a reopen: %+v, %v", br, err)
	}
}
