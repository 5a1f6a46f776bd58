// Package containers keeps layerlabd's container records in the daemon's
// bbolt file: identity (a 64-hex ID and a unique name, Docker's rules),
// what the container was created from (image, config, host config, the
// storage driver and snapshot key of its rootfs) and its state, which
// changes only along the transitions Docker allows (Transition); a bad one
// is an error wrapping drivers.ErrFailedPrecondition, which the API
// answers with 409.
package containers

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/namesgenerator"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/storage"
	"github.com/layerlab/layerlab/runtime/volumes"
)

// The states a container is in, as Docker's State.Status names them.
const (
	Created = container.StateCreated
	Running = container.StateRunning
	Paused  = container.StatePaused
	Exited  = container.StateExited
	Dead    = container.StateDead
	// Restarting is an exited container its restart policy will start
	// again after the backoff.
	Restarting = container.StateRestarting
)

// State is a container's lifecycle state.
type State struct {
	Status     string
	Pid        int
	ExitCode   int
	OOMKilled  bool
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// Health is the healthcheck's state once a run with a probe began;
	// it outlives the run, as dockerd's does.
	Health *container.Health `json:",omitempty"`
}

// Record is one container.
type Record struct {
	ID          string
	Name        string // without Docker's leading slash
	Image       string // as the create request named it
	ImageID     digest.Digest
	Created     time.Time
	Path        string // the command, after the image's config merged in
	Args        []string
	Config      *container.Config
	HostConfig  *container.HostConfig
	Driver      string // the storage driver holding the rootfs
	SnapshotKey string // the rootfs's active snapshot
	State       State
	// RestartCount counts the restarts its policy made since a user last
	// started it; ManuallyStopped is dockerd's HasBeenManuallyStopped (a
	// user's stop or kill), which unless-stopped honours.
	RestartCount    int
	ManuallyStopped bool
	// Mounts are its binds, volumes and tmpfs mounts, resolved at create
	// (anonymous volumes named).
	Mounts []volumes.MountPoint `json:",omitempty"`
}

// Errors callers test with errors.Is; each wraps a drivers sentinel so the
// API maps it to a status code.
var (
	ErrNoSuchContainer = fmt.Errorf("no such container: %w", drivers.ErrNotFound)
	ErrNameConflict    = fmt.Errorf("container name in use: %w", drivers.ErrAlreadyExists)
	ErrBadTransition   = fmt.Errorf("invalid container state transition: %w", drivers.ErrFailedPrecondition)
)

// noSuchContainer reads as dockerd's "No such container: X".
type noSuchContainer string

func (n noSuchContainer) Error() string { return "No such container: " + string(n) }
func (n noSuchContainer) Unwrap() error { return ErrNoSuchContainer }

// validName is Docker's rule for container names.
var validName = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// transitions says which states each state may move to.
func transitions() map[string][]string {
	return map[string][]string{
		Created:    {Running, Exited, Dead},
		Running:    {Paused, Exited, Dead},
		Paused:     {Running, Exited, Dead},
		Exited:     {Running, Restarting, Dead},
		Restarting: {Running, Exited, Dead},
		Dead:       {},
	}
}

// Transition checks that a container in from may move to to.
func Transition(from, to string) error {
	for _, s := range transitions()[from] {
		if s == to {
			return nil
		}
	}
	return fmt.Errorf("cannot move from %s to %s: %w", from, to, ErrBadTransition)
}

var (
	bucketContainers = []byte("containers")
	bucketNames      = []byte("container-names")
)

// Store keeps the records in db, which its caller owns.
type Store struct {
	db *bolt.DB
	// Concurrent writes share a commit (two fsyncs): 50 containers
	// started at once otherwise queue behind 50 commits.
	group *storage.Group
}

// New makes the store's buckets in db.
func New(db *bolt.DB) (*Store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketContainers, bucketNames} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("container store: %w", err)
	}
	return &Store{db: db, group: &storage.Group{}}, nil
}

// NewID returns a random 64-hex container ID.
func NewID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Add stores a new record with state created, giving it a generated name
// when it has none. A name in use is ErrNameConflict, with dockerd's words.
func (s *Store) Add(r *Record) error {
	if r.Name != "" && !validName.MatchString(r.Name) {
		return fmt.Errorf("invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed: %w", r.Name, drivers.ErrInvalidArgument)
	}
	r.Name = strings.TrimPrefix(r.Name, "/")
	r.State = State{Status: Created}
	return s.group.Update(s.db, func(tx *bolt.Tx) error {
		names := tx.Bucket(bucketNames)
		if r.Name == "" {
			for retry := 0; ; retry++ {
				r.Name = namesgenerator.GetRandomName(retry)
				if names.Get([]byte(r.Name)) == nil {
					break
				}
			}
		}
		if id := names.Get([]byte(r.Name)); id != nil {
			return fmt.Errorf(`Conflict. The container name "/%s" is already in use by container "%s". You have to remove (or rename) that container to be able to reuse that name: %w`, r.Name, id, ErrNameConflict)
		}
		if err := names.Put([]byte(r.Name), []byte(r.ID)); err != nil {
			return err
		}
		return put(tx, r)
	})
}

func put(tx *bolt.Tx, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketContainers).Put([]byte(r.ID), data)
}

// Get finds a container by full ID, name or unique ID prefix, as dockerd.
func (s *Store) Get(ref string) (Record, error) {
	var r Record
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		r, err = get(tx, ref)
		return err
	})
	return r, err
}

func get(tx *bolt.Tx, ref string) (Record, error) {
	var r Record
	b := tx.Bucket(bucketContainers)
	data := b.Get([]byte(ref))
	if data == nil {
		if id := tx.Bucket(bucketNames).Get([]byte(strings.TrimPrefix(ref, "/"))); id != nil {
			data = b.Get(id)
		}
	}
	if data == nil && ref != "" {
		c := b.Cursor()
		for k, v := c.Seek([]byte(ref)); k != nil && strings.HasPrefix(string(k), ref); k, v = c.Next() {
			if data != nil {
				return r, fmt.Errorf("multiple IDs found with provided prefix: %s: %w", ref, drivers.ErrInvalidArgument)
			}
			data = v
		}
	}
	if data == nil {
		return r, noSuchContainer(ref)
	}
	return r, json.Unmarshal(data, &r)
}

// List returns every record.
func (s *Store) List() ([]Record, error) { return storage.ListJSON[Record](s.db, bucketContainers) }

// Update applies f to the record id in one transaction and returns the
// result. f changes the state through SetState to have it checked.
func (s *Store) Update(id string, f func(*Record) error) (Record, error) {
	var r Record
	err := s.group.Update(s.db, func(tx *bolt.Tx) error {
		var err error
		if r, err = get(tx, id); err != nil {
			return err
		}
		if err := f(&r); err != nil {
			return err
		}
		return put(tx, &r)
	})
	return r, err
}

// SetState moves r to st.Status when Transition allows it.
func (r *Record) SetState(st State) error {
	if err := Transition(r.State.Status, st.Status); err != nil {
		return fmt.Errorf("container %s: %w", r.Name, err)
	}
	r.State = st
	return nil
}

// Delete removes the record and frees its name.
func (s *Store) Delete(id string) error {
	return s.group.Update(s.db, func(tx *bolt.Tx) error {
		r, err := get(tx, id)
		if err != nil {
			return err
		}
		return errors.Join(tx.Bucket(bucketNames).Delete([]byte(r.Name)), tx.Bucket(bucketContainers).Delete([]byte(r.ID)))
	})
}
