// Package storage is the one metadata store every layerlab driver uses: a
// bbolt database of snapshot records (key, parent, kind, labels, numeric id,
// usage once committed). Every change happens in one bbolt transaction, so a
// crash between steps leaves either the old or the new state, never half;
// drivers create their on-disk directories before the transaction commits
// and sweep directories no record names when they open.
package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/kernel"
)

// MaxKeyLen bounds keys and names, which are free-form strings (containerd
// uses file paths as keys in its suite) but never become file names.
const MaxKeyLen = 4096

var (
	bucketSnapshots = []byte("snapshots") // key → record (JSON)
	bucketChildren  = []byte("children")  // parent + "\x00" + child → nil
	bucketMeta      = []byte("meta")      // ids sequence, schema version
	bucketProjects  = []byte("projects")  // quota project id (big endian) → key
	keySchema       = []byte("schema")
	schemaVersion   = []byte("1")
)

// Store is an open metadata database.
type Store struct {
	db    *bolt.DB
	group group // commits concurrent Updates together (group.go)
}

// Open opens or creates the database at path. When another process holds
// it (bbolt flocks the file) it gives up after 5 s with ErrUnavailable,
// naming the holder where /proc/locks tells it.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("metadata store: %w", err)
	}
	const wait = 5 * time.Second
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: wait, NoFreelistSync: true})
	if errors.Is(err, berrors.ErrTimeout) {
		who := "another process"
		if h, ok := kernel.FlockHolder(path); ok {
			who = h.String()
		}
		return nil, fmt.Errorf("metadata store %s: %w: %s has held its lock for over %v; stop it, or use another home (one home serves one driver process at a time)", path, drivers.ErrUnavailable, who, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("metadata store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSnapshots, bucketChildren, bucketMeta, bucketProjects} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchema); v != nil && string(v) != string(schemaVersion) {
			return fmt.Errorf("schema version %s, this layerlab reads %s: %w", v, schemaVersion, drivers.ErrFailedPrecondition)
		}
		return meta.Put(keySchema, schemaVersion)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("metadata store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// View runs fn in a read-only transaction.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Update runs fn in a read-write transaction, committed (and fsynced)
// before Update returns when fn returns nil, and undone otherwise. Updates
// that overlap in time may share one commit (group.go), so fn may run more
// than once and must act only on the transaction.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.group.update(s.db, func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}
