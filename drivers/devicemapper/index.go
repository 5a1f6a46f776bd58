package devicemapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/layerlab/layerlab/drivers"
)

// device is what the driver keeps about one thin device, in
// home/devmapper/devices/ID.json (the base device in base.json).
//
// The files are the driver's list of the thin ids it made: a pool does not
// list its thin ids without a metadata snapshot and thin_ls, and a pool
// of the user's may hold devices of others. A file is written (and
// synced) before its create_thin or create_snap and deleted after the
// delete message, so every thin id the driver made is named by a file:
// IDs returns them, and core's sweep removes the ones no snapshot record
// names (a crash between the two steps, or a device still open when its
// snapshot was removed). Thin ids in the pool that no file names cannot
// come from this driver; `thin_ls --metadata-snap` on the pool's
// metadata device lists every id, for an audit of a shared pool.
type device struct {
	ID       uint32 `json:"id"`
	Size     int64  `json:"size"` // bytes: the table's length, the filesystem's size
	FS       string `json:"fs"`
	ReadOnly bool   `json:"read_only,omitempty"` // a view
	// What the device held when it was made (what it shares with its
	// origin, or the fresh filesystem's own blocks): usage is what it
	// holds beyond that.
	BaseBytes  int64 `json:"base_bytes"`
	BaseInodes int64 `json:"base_inodes"`
	// What a committed device (or the base device) holds, for its
	// children's baseline.
	Bytes     int64 `json:"bytes,omitempty"`
	Inodes    int64 `json:"inodes,omitempty"`
	Committed bool  `json:"committed,omitempty"`
	// Removed marks a device whose snapshot is gone but which was still
	// open; the sweep deletes it once it is closed.
	Removed bool `json:"removed,omitempty"`
}

// index is the directory of device files, with a cache of what was read.
type index struct {
	dir   string
	mu    sync.Mutex
	cache map[uint32]device
}

func newIndex(dir string) (*index, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &index{dir: dir, cache: map[uint32]device{}}, nil
}

func (x *index) path(id uint32) string {
	return filepath.Join(x.dir, strconv.FormatUint(uint64(id), 10)+".json")
}

func (x *index) get(id uint32) (device, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if d, ok := x.cache[id]; ok {
		return d, nil
	}
	var d device
	if err := readJSON(x.path(id), &d); err != nil {
		return d, err
	}
	x.cache[id] = d
	return d, nil
}

func (x *index) put(d device) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.cache, d.ID)
	if err := writeJSON(x.path(d.ID), d); err != nil {
		return err
	}
	x.cache[d.ID] = d
	return nil
}

// create writes the file of a new device, durably, before the device is
// made. A new file needs no rename to be replaced atomically, which saves
// a journal commit on every Prepare; a file left by a crash (the metadata
// store hands the id out again) is replaced.
func (x *index) create(d device) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	path := x.path(d.ID)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		delete(x.cache, d.ID)
		if err := writeJSON(path, d); err != nil {
			return err
		}
		x.cache[d.ID] = d
		return nil
	}
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = syncDir(x.dir)
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	x.cache[d.ID] = d
	return nil
}

func (x *index) remove(id uint32) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.cache, id)
	if err := os.Remove(x.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ids lists the thin ids that have a file.
func (x *index) ids() ([]uint32, error) {
	entries, err := os.ReadDir(x.dir)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			if id, err := strconv.ParseUint(n, 10, 32); err == nil {
				ids = append(ids, uint32(id))
			}
		}
	}
	return ids, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, drivers.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: corrupt: %w", path, err)
	}
	return nil
}

// writeJSON replaces path atomically and durably: a crash leaves the old
// or the new content, and the new one survives once this returns.
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
