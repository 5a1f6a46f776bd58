// Package volumes keeps layerlabd's named and anonymous volumes: their
// records in the daemon's bbolt file (bucket "volumes"), their data under
// DATA-ROOT/volumes/NAME/_data as dockerd's local driver lays it out, and
// which containers use each one (in memory, rebuilt from the container
// records at start), so an in-use volume is never removed.
//
// A volume lives on the host filesystem (the default) or, a layerlab
// extension, as an active snapshot of an enabled storage driver
// (`docker volume create -o driver=btrfs -o size=10M`), so it can have the
// quota that driver offers. Such a volume is mounted on its _data
// directory while a container uses it and unmounted after.
package volumes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"time"

	"github.com/containerd/continuity/fs"
	"github.com/docker/docker/api/types/volume"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
	"github.com/layerlab/layerlab/drivers/storage"
)

// LocalDriver is the one volume driver: dockerd's name for volumes kept
// by the daemon itself.
const LocalDriver = "local"

// The local driver's options: driver and size are layerlab's (a volume
// on a storage driver, with a quota).
const (
	optDriver = "driver"
	optSize   = "size"
)

// snapshotPrefix names the active snapshot of a driver-backed volume.
const snapshotPrefix = "volume-"

// Record is one volume.
type Record struct {
	Name      string
	Driver    string // the volume driver: always "local"
	CreatedAt time.Time
	Labels    map[string]string
	Options   map[string]string
	// Anonymous volumes get a random name; rm -v and run --rm remove
	// them with their container.
	Anonymous bool
	// Storage is the storage driver holding the data (its snapshot
	// SnapshotKey); "" for a directory on the host filesystem.
	Storage     string
	SnapshotKey string
}

// Errors callers test with errors.Is.
var (
	ErrNoSuchVolume = fmt.Errorf("no such volume: %w", drivers.ErrNotFound)
	ErrInUse        = fmt.Errorf("volume is in use: %w", drivers.ErrFailedPrecondition)
)

// dockerdError reads exactly as dockerd's message and wraps its class.
type dockerdError struct {
	msg   string
	class error
}

func (e dockerdError) Error() string { return e.msg }
func (e dockerdError) Unwrap() error { return e.class }

// validName is dockerd's rule for local volume names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidName refuses a name the local driver cannot store, with dockerd's
// words (a relative host path given to -v lands here).
func ValidName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("create %s: %q includes invalid characters for a local volume name, only %q are allowed. If you intended to pass a host directory, use absolute path: %w",
			name, name, "[a-zA-Z0-9][a-zA-Z0-9_.-]", drivers.ErrInvalidArgument)
	}
	return nil
}

var bucket = []byte("volumes")

// Store is the volume store. Its methods are safe for concurrent use.
type Store struct {
	db      *bolt.DB
	root    string
	lookup  func(name string) (drivers.Driver, error)
	enabled []string

	mu     sync.Mutex
	refs   map[string]map[string]bool // volume -> IDs of the containers using it
	mounts map[string]int             // driver-backed volume -> containers running with it
}

// New opens the store: records in db (which its caller owns), data under
// root; lookup returns an enabled storage driver by name (enabled are
// their names, for messages).
func New(db *bolt.DB, root string, lookup func(string) (drivers.Driver, error), enabled []string) (*Store, error) {
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, err
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return nil, fmt.Errorf("volume store: %w", err)
	}
	return &Store{db: db, root: root, lookup: lookup, enabled: enabled,
		refs: map[string]map[string]bool{}, mounts: map[string]int{}}, nil
}

// Path is where the volume's data is (a mount point for a driver-backed
// volume), as dockerd's Mountpoint.
func (s *Store) Path(name string) string { return filepath.Join(s.root, name, "_data") }

// Create makes a volume (a random name when name is ""). A volume of that
// name already there is returned as it is, as dockerd does. A user (a
// container ID; "" for none) is counted in the same step, so no remove or
// prune takes the volume between its creation and its first use.
func (s *Store) Create(ctx context.Context, o volume.CreateOptions, anonymous bool, user string) (Record, bool, error) {
	if o.Driver != "" && o.Driver != LocalDriver {
		return Record{}, false, fmt.Errorf("error looking up volume plugin %s: plugin %q not found (layerlabd has the local driver; -o driver=NAME puts a volume on a storage driver): %w", o.Driver, o.Driver, drivers.ErrNotFound)
	}
	if o.Name == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		o.Name = hex.EncodeToString(b)
	}
	if err := ValidName(o.Name); err != nil {
		return Record{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, err := s.Get(o.Name); err == nil {
		s.ref(r.Name, user)
		return r, false, nil
	}
	r := Record{Name: o.Name, Driver: LocalDriver, CreatedAt: time.Now().UTC(), Labels: o.Labels, Options: o.DriverOpts, Anonymous: anonymous}
	var size int64
	for k, v := range o.DriverOpts {
		switch k {
		case optDriver:
			r.Storage = v
		case optSize:
			n, err := drivers.ParseSize("size", v)
			if err != nil {
				return Record{}, false, err
			}
			size = n
		default:
			return Record{}, false, fmt.Errorf("create %s: volume option %q is not supported (layerlabd's local driver takes driver=STORAGE-DRIVER and size=BYTES): %w", o.Name, k, drivers.ErrInvalidArgument)
		}
	}
	if size > 0 && r.Storage == "" {
		return Record{}, false, fmt.Errorf("create %s: size= needs driver=NAME, a storage driver with a quota (enabled: %s): %w", o.Name, strings.Join(s.enabled, ", "), drivers.ErrInvalidArgument)
	}
	dir := filepath.Join(s.root, r.Name)
	if err := os.MkdirAll(filepath.Join(dir, "_data"), 0o755); err != nil {
		return Record{}, false, err
	}
	if r.Storage != "" {
		if err := s.prepare(ctx, &r, size); err != nil {
			return Record{}, false, errors.Join(err, os.RemoveAll(dir))
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return tx.Bucket(bucket).Put([]byte(r.Name), data)
	})
	if err != nil {
		return Record{}, false, errors.Join(err, s.destroy(context.WithoutCancel(ctx), r))
	}
	s.ref(r.Name, user)
	return r, true, nil
}

// prepare makes a driver-backed volume's snapshot, with the driver's
// quota when size is set.
func (s *Store) prepare(ctx context.Context, r *Record, size int64) error {
	drv, err := s.lookup(r.Storage)
	if err != nil {
		return fmt.Errorf("create %s: driver=%s: %w", r.Name, r.Storage, err)
	}
	var opts []drivers.Opt
	if size > 0 {
		if caps := drv.Capabilities(); !caps.Quota {
			return fmt.Errorf("create %s: storage driver %s cannot limit a volume's size here: %s (drivers with a quota among the enabled ones: %s): %w",
				r.Name, r.Storage, caps.QuotaNote, s.withQuota(), drivers.ErrInvalidArgument)
		}
		opts = append(opts, drivers.WithSize(size))
	}
	r.SnapshotKey = snapshotPrefix + r.Name
	if _, err := drv.Prepare(ctx, r.SnapshotKey, "", opts...); err != nil {
		return fmt.Errorf("create %s on storage driver %s: %w", r.Name, r.Storage, err)
	}
	return nil
}

// withQuota names the enabled drivers that enforce a size.
func (s *Store) withQuota() string {
	var names []string
	for _, n := range s.enabled {
		if drv, err := s.lookup(n); err == nil && drv.Capabilities().Quota {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Get returns the volume name, with dockerd's words when there is none.
func (s *Store) Get(name string) (Record, error) {
	var r Record
	err := s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucket).Get([]byte(name))
		if data == nil {
			return dockerdError{"get " + name + ": no such volume", ErrNoSuchVolume}
		}
		return json.Unmarshal(data, &r)
	})
	return r, err
}

// List returns every volume, by name.
func (s *Store) List() ([]Record, error) { return storage.ListJSON[Record](s.db, bucket) }

// Remove deletes a volume no container uses; force makes a missing one
// no error, as `docker volume rm -f`.
func (s *Store) Remove(ctx context.Context, name string, force bool) error {
	r, err := s.Get(name)
	if err != nil {
		if force && errors.Is(err, drivers.ErrNotFound) {
			return nil
		}
		return err
	}
	// Held to the end: a container that starts using the volume
	// meanwhile waits, and then finds it gone.
	s.mu.Lock()
	defer s.mu.Unlock()
	// Again under the lock: a remove that ran meanwhile deleted it, or a
	// create made another volume of the name.
	if r, err = s.Get(name); err != nil {
		if force && errors.Is(err, drivers.ErrNotFound) {
			return nil
		}
		return err
	}
	users := s.users(name)
	if len(users) > 0 {
		return dockerdError{fmt.Sprintf("remove %s: volume is in use - [%s]", name, strings.Join(users, ", ")), ErrInUse}
	}
	if err := s.destroy(ctx, r); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(name)) })
}

// destroy removes a volume's data: its snapshot, then its directory.
func (s *Store) destroy(ctx context.Context, r Record) error {
	dir := filepath.Join(s.root, r.Name)
	if r.SnapshotKey != "" {
		if err := mount.UnmountAll(s.Path(r.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		drv, err := s.lookup(r.Storage)
		if err != nil {
			return err
		}
		if err := drv.Remove(ctx, r.SnapshotKey); err != nil && !errors.Is(err, drivers.ErrNotFound) {
			return err
		}
		// Only the empty mount point and its directory remain.
		return errors.Join(os.Remove(s.Path(r.Name)), os.Remove(dir))
	}
	if m, err := mount.Mounted(s.Path(r.Name)); err == nil && m {
		return fmt.Errorf("its data directory %s is still mounted: %w", s.Path(r.Name), drivers.ErrFailedPrecondition)
	}
	return os.RemoveAll(dir)
}

// users lists the containers using name, sorted; s.mu is held.
func (s *Store) users(name string) []string {
	var ids []string
	for id := range s.refs[name] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Ref records that container id uses the volume name.
func (s *Store) Ref(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ref(name, id)
}

// ref is Ref with s.mu held; an empty id is no user.
func (s *Store) ref(name, id string) {
	if id == "" {
		return
	}
	if s.refs[name] == nil {
		s.refs[name] = map[string]bool{}
	}
	s.refs[name][id] = true
}

// Unref drops container id's use of name.
func (s *Store) Unref(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refs[name], id)
	if len(s.refs[name]) == 0 {
		delete(s.refs, name)
	}
}

// InUse says whether a container uses name.
func (s *Store) InUse(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.refs[name]) > 0
}

// Mount makes the volume's data available at Path for one more running
// container: a driver-backed volume's snapshot is mounted by the first.
func (s *Store) Mount(ctx context.Context, name string) (string, error) {
	r, err := s.Get(name)
	if err != nil {
		return "", err
	}
	path := s.Path(name)
	if r.SnapshotKey == "" {
		return path, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mounts[name] == 0 {
		drv, err := s.lookup(r.Storage)
		if err != nil {
			return "", err
		}
		mounts, err := drv.Mounts(ctx, r.SnapshotKey)
		if err != nil {
			return "", err
		}
		if err := mount.All(mounts, path); err != nil {
			return "", fmt.Errorf("mounting volume %s: %w", name, err)
		}
	}
	s.mounts[name]++
	return path, nil
}

// Unmount ends one running container's use of the volume; the last one
// unmounts a driver-backed volume.
func (s *Store) Unmount(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mounts[name] == 0 {
		return nil
	}
	s.mounts[name]--
	if s.mounts[name] > 0 {
		return nil
	}
	delete(s.mounts, name)
	return mount.UnmountAll(s.Path(name))
}

// Recover unmounts what a daemon that crashed left mounted of its
// driver-backed volumes (none is in use at start).
func (s *Store) Recover() error {
	recs, err := s.List()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if r.SnapshotKey == "" {
			continue
		}
		if err := mount.UnmountAll(s.Path(r.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("volume %s: %w", r.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Empty says whether the volume has no data yet (for the copy of an
// image's content into a new volume).
func (s *Store) Empty(name string) bool {
	f, err := os.Open(s.Path(name))
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	// A fresh btrfs or ext4 snapshot may show its own lost+found.
	return len(names) == 0 || slices.Equal(names, []string{"lost+found"})
}

// Volume is r in the API's shape.
func (s *Store) Volume(r Record) *volume.Volume {
	v := &volume.Volume{Name: r.Name, Driver: r.Driver, Mountpoint: s.Path(r.Name), Labels: r.Labels,
		Options: r.Options, Scope: "local", CreatedAt: r.CreatedAt.Format(time.RFC3339)}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if v.Options == nil {
		v.Options = map[string]string{}
	}
	if r.Storage != "" {
		v.Status = map[string]any{"StorageDriver": r.Storage, "Snapshot": r.SnapshotKey}
	}
	return v
}

// DiskUsage returns every volume with its UsageData: the bytes its data
// takes (the driver's Usage for a driver-backed volume, the blocks of its
// files otherwise) and how many containers use it — what docker system
// df's Volumes list shows.
func (s *Store) DiskUsage(ctx context.Context) ([]*volume.Volume, error) {
	recs, err := s.List()
	if err != nil {
		return nil, err
	}
	out := make([]*volume.Volume, 0, len(recs))
	for _, r := range recs {
		v := s.Volume(r)
		size, err := s.size(ctx, r)
		if err != nil {
			size = -1 // dockerd's "size unknown"
		}
		s.mu.Lock()
		n := len(s.refs[r.Name])
		s.mu.Unlock()
		v.UsageData = &volume.UsageData{Size: size, RefCount: int64(n)}
		out = append(out, v)
	}
	return out, nil
}

func (s *Store) size(ctx context.Context, r Record) (int64, error) {
	if r.SnapshotKey != "" {
		drv, err := s.lookup(r.Storage)
		if err != nil {
			return 0, err
		}
		u, err := drv.Usage(ctx, r.SnapshotKey)
		return u.Size, err
	}
	u, err := fs.DiskUsage(ctx, s.Path(r.Name))
	return u.Size, err
}
