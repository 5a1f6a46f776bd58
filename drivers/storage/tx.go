package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
)

// Tx is one metadata transaction.
type Tx struct {
	tx *bolt.Tx
}

// record is the stored form of a snapshot.
type record struct {
	ID      string            `json:"id"`
	Kind    drivers.Kind      `json:"kind"`
	Parent  string            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created int64             `json:"created"` // unix nanoseconds, UTC
	Updated int64             `json:"updated"`
	Size    int64             `json:"size,omitempty"` // usage, recorded at commit
	Inodes  int64             `json:"inodes,omitempty"`
	Project uint32            `json:"project,omitempty"` // xfs project id, released on Remove
}

func (r record) info(name string) drivers.Info {
	labels := make(map[string]string, len(r.Labels))
	for k, v := range r.Labels {
		labels[k] = v
	}
	return drivers.Info{
		Kind:    r.Kind,
		Name:    name,
		Parent:  r.Parent,
		Labels:  labels,
		Created: time.Unix(0, r.Created).UTC(),
		Updated: time.Unix(0, r.Updated).UTC(),
	}
}

// Snapshot is what a driver needs to lay out or mount a snapshot.
type Snapshot struct {
	ID        string
	Kind      drivers.Kind
	ParentIDs []string          // nearest parent first
	Labels    map[string]string // as recorded; drivers read drivers.LabelSize
	Project   uint32            // quota project id, 0 if none was assigned
}

// ValidKey checks a key or name: non-empty, no NUL, bounded.
func ValidKey(what, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%s is empty: %w", what, drivers.ErrInvalidArgument)
	case strings.IndexByte(key, 0) >= 0:
		return fmt.Errorf("%s %q contains a NUL byte: %w", what, key, drivers.ErrInvalidArgument)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%s is %d bytes, longer than %d: %w", what, len(key), MaxKeyLen, drivers.ErrInvalidArgument)
	}
	return nil
}

func (t *Tx) get(key string) (record, error) {
	var r record
	if err := ValidKey("snapshot key", key); err != nil {
		return r, err
	}
	v := t.tx.Bucket(bucketSnapshots).Get([]byte(key))
	if v == nil {
		return r, fmt.Errorf("snapshot %q: %w", key, drivers.ErrNotFound)
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("snapshot %q: corrupt record: %w", key, err)
	}
	return r, nil
}

func (t *Tx) put(key string, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketSnapshots).Put([]byte(key), v)
}

func childKey(parent, child string) []byte {
	return []byte(parent + "\x00" + child)
}

func (t *Tx) hasChildren(name string) bool {
	prefix := []byte(name + "\x00")
	k, _ := t.tx.Bucket(bucketChildren).Cursor().Seek(prefix)
	return k != nil && bytes.HasPrefix(k, prefix)
}

// Create records a new active or view snapshot of parent and returns its
// layout. parent must be committed.
func (t *Tx) Create(key, parent string, kind drivers.Kind, opts ...drivers.Opt) (Snapshot, error) {
	if kind != drivers.KindActive && kind != drivers.KindView {
		return Snapshot{}, fmt.Errorf("create %q as %s: %w", key, kind, drivers.ErrInvalidArgument)
	}
	if err := ValidKey("snapshot key", key); err != nil {
		return Snapshot{}, err
	}
	if t.tx.Bucket(bucketSnapshots).Get([]byte(key)) != nil {
		return Snapshot{}, fmt.Errorf("snapshot %q: %w", key, drivers.ErrAlreadyExists)
	}
	var parentIDs []string
	if parent != "" {
		p, err := t.get(parent)
		if err != nil {
			return Snapshot{}, fmt.Errorf("parent of %q: %w", key, err)
		}
		if p.Kind != drivers.KindCommitted {
			return Snapshot{}, fmt.Errorf("parent %q of %q is %s, not committed: %w", parent, key, p.Kind, drivers.ErrInvalidArgument)
		}
		if parentIDs, err = t.chain(parent); err != nil {
			return Snapshot{}, err
		}
	}
	info := drivers.Info{}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return Snapshot{}, err
		}
	}
	seq, err := t.tx.Bucket(bucketMeta).NextSequence()
	if err != nil {
		return Snapshot{}, err
	}
	now := time.Now().UnixNano()
	r := record{ID: strconv.FormatUint(seq, 10), Kind: kind, Parent: parent, Labels: info.Labels, Created: now, Updated: now}
	if err := t.put(key, r); err != nil {
		return Snapshot{}, err
	}
	if parent != "" {
		if err := t.tx.Bucket(bucketChildren).Put(childKey(parent, key), nil); err != nil {
			return Snapshot{}, err
		}
	}
	return Snapshot{ID: r.ID, Kind: kind, ParentIDs: parentIDs, Labels: r.Labels}, nil
}

// chain returns the ids of name and its ancestors, nearest first.
func (t *Tx) chain(name string) ([]string, error) {
	var ids []string
	for name != "" {
		r, err := t.get(name)
		if err != nil {
			return nil, fmt.Errorf("ancestor chain: %w", err)
		}
		ids = append(ids, r.ID)
		name = r.Parent
	}
	return ids, nil
}

// Get returns the layout of the snapshot named key.
func (t *Tx) Get(key string) (Snapshot, error) {
	r, err := t.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	var parents []string
	if r.Parent != "" {
		if parents, err = t.chain(r.Parent); err != nil {
			return Snapshot{}, err
		}
	}
	return Snapshot{ID: r.ID, Kind: r.Kind, ParentIDs: parents, Labels: r.Labels, Project: r.Project}, nil
}

// Info returns the public description of the snapshot named key.
func (t *Tx) Info(key string) (drivers.Info, error) {
	r, err := t.get(key)
	if err != nil {
		return drivers.Info{}, err
	}
	return r.info(key), nil
}

// CommittedUsage returns the usage recorded when key was committed, and
// false for snapshots that are not committed.
func (t *Tx) CommittedUsage(key string) (drivers.Usage, bool, error) {
	r, err := t.get(key)
	if err != nil {
		return drivers.Usage{}, false, err
	}
	return drivers.Usage{Size: r.Size, Inodes: r.Inodes}, r.Kind == drivers.KindCommitted, nil
}

// Update changes labels as drivers.Snapshotter.Update describes.
func (t *Tx) Update(info drivers.Info, fieldpaths ...string) (drivers.Info, error) {
	r, err := t.get(info.Name)
	if err != nil {
		return drivers.Info{}, err
	}
	if len(fieldpaths) == 0 {
		fieldpaths = []string{"labels"}
	}
	labels := r.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	for _, path := range fieldpaths {
		if name, ok := strings.CutPrefix(path, "labels."); ok {
			if v, set := info.Labels[name]; set {
				labels[name] = v
			} else {
				delete(labels, name)
			}
			continue
		}
		if path != "labels" {
			return drivers.Info{}, fmt.Errorf("update %q: field %q cannot be changed (only labels can): %w", info.Name, path, drivers.ErrInvalidArgument)
		}
		labels = make(map[string]string, len(info.Labels))
		for k, v := range info.Labels {
			labels[k] = v
		}
	}
	r.Labels = labels
	r.Updated = time.Now().UnixNano()
	if err := t.put(info.Name, r); err != nil {
		return drivers.Info{}, err
	}
	return r.info(info.Name), nil
}

// Commit turns the active snapshot key into the committed snapshot name,
// keeping its id, and records its usage. It returns the id.
func (t *Tx) Commit(key, name string, usage drivers.Usage, opts ...drivers.Opt) (string, error) {
	if err := ValidKey("commit name", name); err != nil {
		return "", err
	}
	r, err := t.get(key)
	if err != nil {
		return "", err
	}
	if r.Kind != drivers.KindActive {
		return "", fmt.Errorf("commit %q: snapshot is a %s, only active snapshots can be committed: %w", key, r.Kind, drivers.ErrFailedPrecondition)
	}
	if t.tx.Bucket(bucketSnapshots).Get([]byte(name)) != nil {
		return "", fmt.Errorf("commit %q as %q: %w", key, name, drivers.ErrAlreadyExists)
	}
	info := r.info(name)
	for _, o := range opts {
		if err := o(&info); err != nil {
			return "", err
		}
	}
	now := time.Now().UnixNano()
	r.Kind, r.Labels, r.Created, r.Updated = drivers.KindCommitted, info.Labels, now, now
	r.Size, r.Inodes = usage.Size, usage.Inodes
	if err := t.tx.Bucket(bucketSnapshots).Delete([]byte(key)); err != nil {
		return "", err
	}
	if err := t.put(name, r); err != nil {
		return "", err
	}
	if r.Parent != "" {
		children := t.tx.Bucket(bucketChildren)
		if err := children.Delete(childKey(r.Parent, key)); err != nil {
			return "", err
		}
		if err := children.Put(childKey(r.Parent, name), nil); err != nil {
			return "", err
		}
	}
	return r.ID, nil
}

// Remove deletes the record of key and returns its id and kind. A snapshot
// with children is refused with ErrFailedPrecondition.
func (t *Tx) Remove(key string) (string, drivers.Kind, error) {
	r, err := t.get(key)
	if err != nil {
		return "", drivers.KindUnknown, err
	}
	if t.hasChildren(key) {
		return "", drivers.KindUnknown, fmt.Errorf("remove %q: other snapshots are based on it; remove them first: %w", key, drivers.ErrFailedPrecondition)
	}
	if err := t.tx.Bucket(bucketSnapshots).Delete([]byte(key)); err != nil {
		return "", drivers.KindUnknown, err
	}
	if r.Parent != "" {
		if err := t.tx.Bucket(bucketChildren).Delete(childKey(r.Parent, key)); err != nil {
			return "", drivers.KindUnknown, err
		}
	}
	if r.Project != 0 {
		if err := t.tx.Bucket(bucketProjects).Delete(projectKey(r.Project)); err != nil {
			return "", drivers.KindUnknown, err
		}
	}
	return r.ID, r.Kind, nil
}

func projectKey(id uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, id)
}

// AssignProject gives snapshot key the lowest quota project id at or above
// base that no other snapshot holds, and records it; Remove releases it.
// (dockerd hands out ids from a counter and never takes them back.)
func (t *Tx) AssignProject(key string, base uint32) (uint32, error) {
	r, err := t.get(key)
	if err != nil {
		return 0, err
	}
	if r.Project != 0 {
		return r.Project, nil
	}
	projects := t.tx.Bucket(bucketProjects)
	id := base
	c := projects.Cursor()
	for k, _ := c.Seek(projectKey(base)); k != nil && binary.BigEndian.Uint32(k) == id; k, _ = c.Next() {
		if id == math.MaxUint32 {
			return 0, fmt.Errorf("no free quota project id at or above %d: %w", base, drivers.ErrUnavailable)
		}
		id++
	}
	if err := projects.Put(projectKey(id), []byte(key)); err != nil {
		return 0, err
	}
	r.Project = id
	return id, t.put(key, r)
}

// Walk calls fn with every snapshot's info, in key order.
func (t *Tx) Walk(fn func(drivers.Info) error) error {
	return t.tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
		}
		return fn(r.info(string(k)))
	})
}

// IDs returns the ids of every recorded snapshot, for sweeping directories
// that no record names.
func (t *Tx) IDs() (map[string]bool, error) {
	ids := map[string]bool{}
	err := t.tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
		}
		ids[r.ID] = true
		return nil
	})
	return ids, err
}
