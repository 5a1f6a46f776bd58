package storage

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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
	// State is empty for a snapshot at rest. StateCommitting marks an
	// active snapshot whose backend commit is under way (or was, when the
	// process died): Target is the name it is being committed as, and the
	// next open finishes the commit or takes it back.
	State        string            `json:"state,omitempty"`
	Target       string            `json:"target,omitempty"`
	TargetLabels map[string]string `json:"target_labels,omitempty"` // the committed snapshot's labels
}

// StateCommitting is the state of an active snapshot between the two
// transactions of a commit.
const StateCommitting = "committing"

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
	Parent    string            // name of the committed parent, "" for a base
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

// MaxLabelLen bounds a label's key and value together, as containerd does.
const MaxLabelLen = 4096

// ReservedPrefix starts the labels layerlab sets itself (drivers.LabelSize):
// callers may ask for them when a snapshot is made, never change them later.
const ReservedPrefix = "layerlab.io/"

// Reserved reports whether the label key belongs to layerlab.
func Reserved(key string) bool { return strings.HasPrefix(key, ReservedPrefix) }

// ValidLabels checks labels: non-empty keys without NUL, key and value
// within MaxLabelLen together, and, when creating, no reserved key but the
// ones layerlab defines.
func ValidLabels(labels map[string]string, creating bool) error {
	for k, v := range labels {
		switch {
		case k == "" || strings.IndexByte(k, 0) >= 0:
			return fmt.Errorf("label key %q is empty or holds a NUL byte: %w", k, drivers.ErrInvalidArgument)
		case len(k)+len(v) > MaxLabelLen:
			return fmt.Errorf("label %q: key and value are %d bytes, more than %d: %w", k, len(k)+len(v), MaxLabelLen, drivers.ErrInvalidArgument)
		case creating && Reserved(k) && k != drivers.LabelSize:
			return fmt.Errorf("label %q: the %s prefix is reserved to layerlab (only %s may be set): %w", k, ReservedPrefix, drivers.LabelSize, drivers.ErrInvalidArgument)
		}
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

// Plan checks that an active or view snapshot key can be made on parent
// (which must be committed) and returns its layout without an id. The
// caller gives it an id, makes its storage outside any transaction and
// records it with Insert: so a slow copy or clone never holds the one
// writer, and a crash before Insert leaves storage that no record names,
// which the next open sweeps.
func (t *Tx) Plan(key, parent string, kind drivers.Kind, opts ...drivers.Opt) (Snapshot, error) {
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
		if p.Kind != drivers.KindCommitted || p.State != "" {
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
	if err := ValidLabels(info.Labels, true); err != nil {
		return Snapshot{}, fmt.Errorf("create %q: %w", key, err)
	}
	return Snapshot{Kind: kind, Parent: parent, ParentIDs: parentIDs, Labels: info.Labels}, nil
}

// Insert records s, planned by Plan and given an id (and a quota project
// when it has one), under key. It checks again what Plan checked, since
// the storage was made outside any transaction.
func (t *Tx) Insert(key string, s Snapshot) error {
	if _, err := strconv.ParseUint(s.ID, 10, 64); err != nil {
		return fmt.Errorf("insert %q: id %q is not a number: %w", key, s.ID, drivers.ErrInvalidArgument)
	}
	if _, err := t.Plan(key, s.Parent, s.Kind); err != nil {
		return err
	}
	meta := t.tx.Bucket(bucketMeta)
	if id, _ := strconv.ParseUint(s.ID, 10, 64); id > meta.Sequence() {
		if err := meta.SetSequence(id); err != nil {
			return err
		}
	}
	now := time.Now().UnixNano()
	r := record{ID: s.ID, Kind: s.Kind, Parent: s.Parent, Labels: s.Labels, Created: now, Updated: now, Project: s.Project}
	if err := t.put(key, r); err != nil {
		return err
	}
	if s.Parent != "" {
		if err := t.tx.Bucket(bucketChildren).Put(childKey(s.Parent, key), nil); err != nil {
			return err
		}
	}
	if s.Project != 0 {
		projects := t.tx.Bucket(bucketProjects)
		if holder := projects.Get(projectKey(s.Project)); holder != nil {
			return fmt.Errorf("insert %q: quota project %d is held by %q: %w", key, s.Project, holder, drivers.ErrAlreadyExists)
		}
		if err := projects.Put(projectKey(s.Project), []byte(key)); err != nil {
			return err
		}
	}
	return nil
}

// LastID is the highest snapshot id ever recorded; ids above it are free.
func (t *Tx) LastID() uint64 { return t.tx.Bucket(bucketMeta).Sequence() }

// Projects returns the quota project ids that snapshots hold.
func (t *Tx) Projects() map[uint32]bool {
	held := map[uint32]bool{}
	t.tx.Bucket(bucketProjects).ForEach(func(k, _ []byte) error {
		if len(k) == 4 {
			held[binary.BigEndian.Uint32(k)] = true
		}
		return nil
	})
	return held
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
	return Snapshot{ID: r.ID, Kind: r.Kind, Parent: r.Parent, ParentIDs: parents, Labels: r.Labels, Project: r.Project}, nil
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
	labels := map[string]string{}
	for k, v := range r.Labels {
		labels[k] = v
	}
	for _, path := range fieldpaths {
		if name, ok := strings.CutPrefix(path, "labels."); ok {
			if Reserved(name) {
				return drivers.Info{}, fmt.Errorf("update %q: label %q is reserved to layerlab and cannot be changed: %w", info.Name, name, drivers.ErrInvalidArgument)
			}
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
		// A whole-set replacement keeps the reserved labels; it may not
		// change them.
		next := make(map[string]string, len(info.Labels))
		for k, v := range info.Labels {
			if Reserved(k) && v != r.Labels[k] {
				return drivers.Info{}, fmt.Errorf("update %q: label %q is reserved to layerlab and cannot be changed: %w", info.Name, k, drivers.ErrInvalidArgument)
			}
			next[k] = v
		}
		for k, v := range r.Labels {
			if Reserved(k) {
				next[k] = v
			}
		}
		labels = next
	}
	if err := ValidLabels(labels, false); err != nil {
		return drivers.Info{}, fmt.Errorf("update %q: %w", info.Name, err)
	}
	r.Labels = labels
	r.Updated = time.Now().UnixNano()
	if err := t.put(info.Name, r); err != nil {
		return drivers.Info{}, err
	}
	return r.info(info.Name), nil
}

// BeginCommit checks that the active snapshot key can be committed as
// name and marks it committing, so that a crash before FinishCommit is
// finished (or taken back) by the next open. It returns the layout.
func (t *Tx) BeginCommit(key, name string, opts ...drivers.Opt) (Snapshot, error) {
	if err := ValidKey("commit name", name); err != nil {
		return Snapshot{}, err
	}
	r, err := t.get(key)
	if err != nil {
		return Snapshot{}, err
	}
	if r.Kind != drivers.KindActive {
		return Snapshot{}, fmt.Errorf("commit %q: snapshot is a %s, only active snapshots can be committed: %w", key, r.Kind, drivers.ErrFailedPrecondition)
	}
	if r.State != "" {
		return Snapshot{}, fmt.Errorf("commit %q: it is already being committed as %q: %w", key, r.Target, drivers.ErrFailedPrecondition)
	}
	if t.tx.Bucket(bucketSnapshots).Get([]byte(name)) != nil {
		return Snapshot{}, fmt.Errorf("commit %q as %q: %w", key, name, drivers.ErrAlreadyExists)
	}
	// The committed snapshot's labels are settled now, so that a commit
	// the next open finishes gets the ones asked for.
	info := r.info(name)
	for _, o := range opts {
		if err := o(&info); err != nil {
			return Snapshot{}, err
		}
	}
	if err := ValidLabels(info.Labels, false); err != nil {
		return Snapshot{}, fmt.Errorf("commit %q: %w", key, err)
	}
	r.State, r.Target, r.TargetLabels = StateCommitting, name, info.Labels
	if err := t.put(key, r); err != nil {
		return Snapshot{}, err
	}
	return t.Get(key)
}

// AbortCommit takes back BeginCommit: key is an active snapshot at rest
// again.
func (t *Tx) AbortCommit(key string) error {
	r, err := t.get(key)
	if err != nil {
		return err
	}
	r.State, r.Target, r.TargetLabels = "", "", nil
	return t.put(key, r)
}

// Committing returns the keys of snapshots whose commit BeginCommit
// started and nothing finished, with the names they were to get.
func (t *Tx) Committing() (map[string]string, error) {
	pending := map[string]string{}
	err := t.tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
		}
		if r.State == StateCommitting {
			pending[string(k)] = r.Target
		}
		return nil
	})
	return pending, err
}

// FinishCommit turns the snapshot key, which BeginCommit marked, into the
// committed snapshot name, keeping its id, and records its usage.
func (t *Tx) FinishCommit(key string, usage drivers.Usage) (string, error) {
	r, err := t.get(key)
	if err != nil {
		return "", err
	}
	if r.State != StateCommitting {
		return "", fmt.Errorf("finish the commit of %q: no commit was begun: %w", key, drivers.ErrFailedPrecondition)
	}
	name := r.Target
	if t.tx.Bucket(bucketSnapshots).Get([]byte(name)) != nil {
		return "", fmt.Errorf("commit %q as %q: %w", key, name, drivers.ErrAlreadyExists)
	}
	now := time.Now().UnixNano()
	r.Kind, r.Labels, r.Created, r.Updated = drivers.KindCommitted, r.TargetLabels, now, now
	r.Size, r.Inodes = usage.Size, usage.Inodes
	r.State, r.Target, r.TargetLabels = "", "", nil
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
	if r.Project != 0 {
		if err := t.tx.Bucket(bucketProjects).Put(projectKey(r.Project), []byte(name)); err != nil {
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
	if r.State != "" {
		return "", drivers.KindUnknown, fmt.Errorf("remove %q: it is being committed as %q: %w", key, r.Target, drivers.ErrFailedPrecondition)
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

// Walk calls fn with the info of every snapshot that matches any of
// filters (all when there are none), in key order. A filter that names
// one snapshot is a lookup, not a scan.
func (t *Tx) Walk(filters []drivers.Filter, fn func(drivers.Info) error) error {
	if len(filters) == 1 && filters[0].Name != "" {
		r, err := t.get(filters[0].Name)
		if errors.Is(err, drivers.ErrNotFound) || errors.Is(err, drivers.ErrInvalidArgument) {
			return nil
		}
		if err != nil {
			return err
		}
		if info := r.info(filters[0].Name); filters[0].Match(info) {
			return fn(info)
		}
		return nil
	}
	return t.tx.Bucket(bucketSnapshots).ForEach(func(k, v []byte) error {
		var r record
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("snapshot %q: corrupt record: %w", k, err)
		}
		if info := r.info(string(k)); drivers.MatchAny(info, filters) {
			return fn(info)
		}
		return nil
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

// ListJSON decodes every value of bucket in db as a T, in key order: the
// records the runtime's stores keep as JSON (containers, volumes).
func ListJSON[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	var out []T
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}
