// Package images is layerlabd's content-addressed image store: blobs as
// files named by digest under the daemon's data root, image records and
// references (repo:tag -> image ID) in the daemon's one bbolt file, and
// the unpacking of an image's layers into a storage driver by chain ID.
//
// Layers are kept uncompressed, named by their DiffID: that is what a
// driver applies, what the image config names, and what Save re-exports,
// so no layer is ever decompressed twice.
package images

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/layer"
)

// Sentinels of this package; each wraps the drivers class the API maps to
// a status code.
var (
	// ErrNoSuchImage is a name or ID that matches no image (404).
	ErrNoSuchImage = fmt.Errorf("no such image: %w", drivers.ErrNotFound)
	// ErrConflict is a delete the image's state forbids (409).
	ErrConflict = fmt.Errorf("conflict: %w", drivers.ErrFailedPrecondition)
	// ErrBadArchive is an image archive refused on load (400).
	ErrBadArchive = fmt.Errorf("bad image archive: %w", drivers.ErrInvalidArgument)
)

var (
	bucketImages = []byte("images")
	bucketRefs   = []byte("image-refs")
)

// Record is what the store keeps of one image; its ID is the digest of its
// config blob.
type Record struct {
	ID       digest.Digest   `json:"id"`
	Manifest digest.Digest   `json:"manifest"` // the manifest blob it was loaded with
	Layers   []digest.Digest `json:"layers"`   // DiffIDs, base first
	Size     int64           `json:"size"`     // uncompressed bytes of all layers
	Loaded   time.Time       `json:"loaded"`
	// Parent is the image this one was committed or built on (empty for
	// a loaded image); BuildKey the build step that made it from Parent,
	// which the build cache looks up (Child).
	Parent   digest.Digest `json:"parent,omitempty"`
	BuildKey string        `json:"buildKey,omitempty"`
}

// Store is the image store. It is safe for concurrent use.
type Store struct {
	root  string // <data-root>/image: blobs/, tmp/
	db    *bolt.DB
	inUse func(id digest.Digest) bool
	// applied hears of every layer Unpack applied into a driver (nil:
	// nobody listens); the daemon's metrics count the bytes per driver.
	applied func(driver drivers.Snapshotter, st layer.Stats)

	mu    sync.Mutex // serializes loads and deletes against blob removal
	locks keyLocks   // per chain ID, for Unpack
}

// Option configures a Store.
type Option func(*Store)

// WithInUse sets the hook Delete asks before it removes an image (the
// containers using it come in a later slice). It runs inside the store's
// write transaction, so it must not call back into the store.
func WithInUse(f func(id digest.Digest) bool) Option { return func(s *Store) { s.inUse = f } }

// WithApplied sets a hook Unpack calls after it applied a layer into a
// snapshot of driver, with what Apply reported.
func WithApplied(f func(driver drivers.Snapshotter, st layer.Stats)) Option {
	return func(s *Store) { s.applied = f }
}

// New opens the store with its files under root and its records in db,
// which the caller owns and closes.
func New(root string, db *bolt.DB, opts ...Option) (*Store, error) {
	s := &Store{root: root, db: db, inUse: func(digest.Digest) bool { return false }}
	for _, o := range opts {
		o(s)
	}
	for _, d := range []string{s.blobDir(), s.tmpDir(), s.mntDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// A load that died left only its scratch directory: nothing names it.
	if err := clearDir(s.tmpDir()); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketRefs, bucketBlobs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

func (s *Store) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) tmpDir() string  { return filepath.Join(s.root, "tmp") }

// blobPath is where the blob d lives; d was validated by the caller.
func (s *Store) blobPath(d digest.Digest) string { return filepath.Join(s.blobDir(), d.Encoded()) }

func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// NormalizeRef turns a reference such as "busybox" into the familiar form
// the store keys refs by ("busybox:latest"), as docker shows them; a
// digest reference keeps its digest ("reg:5000/bb@sha256:...").
func NormalizeRef(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		d, err := name.NewDigest(ref)
		if err != nil {
			return "", fmt.Errorf("reference %q: %w: %w", ref, drivers.ErrInvalidArgument, err)
		}
		return FamiliarRepo(d.Context()) + "@" + d.DigestStr(), nil
	}
	tag, err := name.NewTag(ref, name.WithDefaultTag("latest"))
	if err != nil {
		return "", fmt.Errorf("reference %q: %w: %w", ref, drivers.ErrInvalidArgument, err)
	}
	return FamiliarRepo(tag.Context()) + ":" + tag.TagStr(), nil
}

// FamiliarRepo is a repository as docker shows it: Docker Hub's without
// its registry and "library/", any other's with its registry.
func FamiliarRepo(r name.Repository) string {
	if reg := r.RegistryStr(); reg != name.DefaultRegistry {
		return reg + "/" + r.RepositoryStr()
	}
	return strings.TrimPrefix(r.RepositoryStr(), "library/")
}

// refRepo is the repository part of a stored ref (tag or digest).
func refRepo(ref string) string {
	if r, _, ok := strings.Cut(ref, "@"); ok {
		return r
	}
	return ref[:strings.LastIndex(ref, ":")]
}

// splitRefs separates tag refs from digest refs.
func splitRefs(refs []string) (tags, digests []string) {
	for _, r := range refs {
		if strings.Contains(r, "@") {
			digests = append(digests, r)
		} else {
			tags = append(tags, r)
		}
	}
	return tags, digests
}

// noSuchImage is ErrNoSuchImage in dockerd's words, which clients match.
type noSuchImage string

func (n noSuchImage) Error() string { return "No such image: " + string(n) }
func (n noSuchImage) Unwrap() error { return ErrNoSuchImage }

// record reads the image id in tx.
func record(tx *bolt.Tx, id digest.Digest) (Record, bool, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return Record{}, false, nil
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, false, fmt.Errorf("image record %s: %w", id, err)
	}
	return r, true, nil
}

func putRecord(tx *bolt.Tx, r Record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketImages).Put([]byte(r.ID), v)
}

// tagsOf returns the refs naming id, sorted.
func tagsOf(tx *bolt.Tx, id digest.Digest) []string {
	var tags []string
	_ = tx.Bucket(bucketRefs).ForEach(func(k, v []byte) error {
		if string(v) == string(id) {
			tags = append(tags, string(k))
		}
		return nil
	})
	sort.Strings(tags)
	return tags
}

// resolve finds the image a user named: a ref, a full or "sha256:"-less
// ID, or an unambiguous ID prefix, as docker accepts them. byRef says the
// name was a ref (which Delete untags) and gives its normal form.
func resolve(tx *bolt.Tx, nameOrID string) (id digest.Digest, ref string, err error) {
	hexPart := strings.TrimPrefix(nameOrID, "sha256:")
	if isHex(hexPart) {
		var found []digest.Digest
		c := tx.Bucket(bucketImages).Cursor()
		prefix := []byte("sha256:" + hexPart)
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			found = append(found, digest.Digest(k))
		}
		switch {
		case len(found) == 1:
			return found[0], "", nil
		case len(found) > 1:
			return "", "", fmt.Errorf("%q matches %d images: %w; give more of the ID", nameOrID, len(found), drivers.ErrInvalidArgument)
		}
	}
	ref, err = NormalizeRef(nameOrID)
	if err != nil {
		return "", "", noSuchImage(nameOrID)
	}
	v := tx.Bucket(bucketRefs).Get([]byte(ref))
	if v == nil {
		return "", "", noSuchImage(ref)
	}
	return digest.Digest(v), ref, nil
}

func isHex(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Resolve returns the ID of the image nameOrID names.
func (s *Store) Resolve(nameOrID string) (digest.Digest, error) {
	var id digest.Digest
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		id, _, err = resolve(tx, nameOrID)
		return err
	})
	return id, err
}

// Tag points ref (normalized; tag "latest" when none) at the image
// nameOrID names, moving it from another image if it named one.
func (s *Store) Tag(nameOrID, ref string) error {
	norm, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	if strings.Contains(norm, "@") {
		return fmt.Errorf("refusing to create a tag with a digest reference %q; give REPO[:TAG]: %w", ref, drivers.ErrInvalidArgument)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		id, _, err := resolve(tx, nameOrID)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketRefs).Put([]byte(norm), []byte(id))
	})
}

// Count returns the number of images.
func (s *Store) Count() int {
	n := 0
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketImages).Stats().KeyN
		return nil
	})
	return n
}

// Deleted is one step of a Delete: a ref untagged or an image deleted.
type Deleted struct {
	Untagged string
	Deleted  digest.Digest
}

// Delete removes what nameOrID names as docker does: a ref is untagged,
// and the image goes with its last ref; an ID with several refs is a
// conflict unless force untags them all. An image the in-use hook claims
// keeps its record (force untags it; without force it is a conflict).
// Layer blobs no other image names are removed with the image.
func (s *Store) Delete(nameOrID string, force bool) ([]Deleted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Deleted
	var gone *Record
	err := s.db.Update(func(tx *bolt.Tx) error {
		id, ref, err := resolve(tx, nameOrID)
		if err != nil {
			return err
		}
		tags := tagsOf(tx, id)
		untag := tags
		if ref != "" {
			untag = withRepoDigests(ref, tags)
		} else if names, _ := splitRefs(tags); len(names) > 1 && !force {
			return fmt.Errorf("unable to delete %s (must be forced) - image is referenced in multiple repositories: %w", id.Encoded()[:12], ErrConflict)
		}
		last := len(untag) == len(tags)
		inUse := s.inUse(id)
		if last && inUse && !force {
			return fmt.Errorf("unable to delete %s: image is being used by a container: %w", nameOrID, ErrConflict)
		}
		for _, t := range untag {
			if err := tx.Bucket(bucketRefs).Delete([]byte(t)); err != nil {
				return err
			}
			out = append(out, Deleted{Untagged: t})
		}
		if !last || inUse {
			return nil
		}
		r, _, err := record(tx, id)
		if err != nil {
			return err
		}
		gone = &r
		out = append(out, Deleted{Deleted: id})
		return tx.Bucket(bucketImages).Delete([]byte(id))
	})
	if err != nil {
		return nil, err
	}
	if gone != nil {
		// The record is gone first, so a crash here leaves only unnamed
		// blobs; they cost space, never correctness.
		if err := s.removeBlobs(*gone); err != nil {
			return out, err
		}
	}
	return out, nil
}

// removeBlobs deletes the blobs of r that no remaining image names.
func (s *Store) removeBlobs(r Record) error {
	used := map[digest.Digest]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			var o Record
			if err := json.Unmarshal(v, &o); err != nil {
				return err
			}
			for _, d := range append([]digest.Digest{o.ID, o.Manifest}, o.Layers...) {
				used[d] = true
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range append([]digest.Digest{r.ID, r.Manifest}, r.Layers...) {
		if d == "" || used[d] {
			continue
		}
		if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// withRepoDigests is what untagging ref removes: ref, and when it is the
// repository's last tag, the repository's digest refs with it (as dockerd
// does, so an image pulled by tag and rmi'd by tag goes away).
func withRepoDigests(ref string, refs []string) []string {
	out := []string{ref}
	if strings.Contains(ref, "@") {
		return out
	}
	repo := refRepo(ref)
	tags, digests := splitRefs(refs)
	for _, t := range tags {
		if t != ref && refRepo(t) == repo {
			return out
		}
	}
	for _, d := range digests {
		if refRepo(d) == repo {
			out = append(out, d)
		}
	}
	return out
}

// keyLocks hands out one mutex per key while someone holds or waits for
// it, so the map does not grow with every chain ID ever unpacked.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	sync.Mutex
	users int
}

func (k *keyLocks) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyLock{}
	}
	l, ok := k.m[key]
	if !ok {
		l = &keyLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
