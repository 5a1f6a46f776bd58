package devicemapper

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/loopfs"
)

// pool is the thin-pool the driver's thin devices live in: its own, on
// two sparse loopback files in its home, or one the user made.
type pool struct {
	ctl       control
	name      string // device name
	dev       string // major:minor, as thin tables name it
	blockSize int64  // bytes
	zeroes    bool   // new blocks read as zeroes where not written
	own       bool   // made by the driver; removed on Close
}

// geometry is what the driver's own pool was made with, kept in
// home/devmapper/pool.json: a pool's block size cannot change, and its
// files keep their size.
type geometry struct {
	DataSize     int64 `json:"data_size"`
	MetadataSize int64 `json:"metadata_size"`
	BlockSize    int64 `json:"block_size"`
}

// ownPoolName derives the pool's name from the device and inode of the
// driver's state directory, as dockerd does: unique among the homes on
// this machine, stable across reopens.
func ownPoolName(dir string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("layerlab-%d:%d-%d-pool", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino), nil
}

// openOwnPool finds the pool a previous open of this home left (a crash
// skips Close) or makes it: sparse files, loop devices with autoclear,
// and the thin-pool table over them. Once the table holds the loop
// devices the driver lets go of them, so removing the pool frees them.
func openOwnPool(ctl control, dir string, c config) (*pool, error) {
	name, err := ownPoolName(dir)
	if err != nil {
		return nil, err
	}
	g, err := loadGeometry(dir, c)
	if err != nil {
		return nil, err
	}
	data, meta := filepath.Join(dir, "data"), filepath.Join(dir, "metadata")
	p := &pool{ctl: ctl, name: name, blockSize: g.BlockSize, own: true}
	if _, err := ctl.Info(name); err == nil {
		if err := p.adopt(data, meta); err != nil {
			return nil, err // not ours to close
		}
		return p, nil
	} else if !errors.Is(err, unix.ENXIO) {
		return nil, err
	}
	for _, f := range []struct {
		path string
		size int64
	}{{data, g.DataSize}, {meta, g.MetadataSize}} {
		if err := sparse(f.path, f.size); err != nil {
			return nil, err
		}
	}
	metaDev, releaseMeta, err := loopfs.Attach(meta)
	if err != nil {
		return nil, fmt.Errorf("pool metadata file: %w", err)
	}
	defer releaseMeta()
	dataDev, releaseData, err := loopfs.Attach(data)
	if err != nil {
		return nil, fmt.Errorf("pool data file: %w", err)
	}
	defer releaseData()
	size, err := fileSize(data)
	if err != nil {
		return nil, err
	}
	size -= size % g.BlockSize
	if _, err := ctl.Create(name, poolTarget(size, metaDev, dataDev, g.BlockSize), false); err != nil {
		return nil, fmt.Errorf("create the thin-pool on %s: %w", dir, err)
	}
	if err := p.adopt(data, meta); err != nil {
		return nil, errors.Join(err, p.close())
	}
	return p, nil
}

// adopt checks that device p.name is a thin-pool over the loop devices of
// data and meta (a name derived from a device and inode can come back on
// a later loop filesystem) and learns its numbers.
func (p *pool) adopt(data, meta string) error {
	t, err := p.learn()
	if err != nil {
		return err
	}
	for _, f := range []struct{ dev, file string }{{t.Meta, meta}, {t.Data, data}} {
		backing, _ := os.ReadFile("/sys/dev/block/" + f.dev + "/loop/backing_file")
		if strings.TrimSpace(string(backing)) != f.file {
			return fmt.Errorf("device-mapper device %s is not the pool of this home (its device %s is not a loop device of %s); remove it with `dmsetup remove %s` if nothing uses it: %w",
				p.name, f.dev, f.file, p.name, drivers.ErrFailedPrecondition)
		}
	}
	return nil
}

// openUserPool checks the user's pool (dm.thinpooldev) and learns it.
func openUserPool(ctl control, name string) (*pool, error) {
	p := &pool{ctl: ctl, name: name}
	_, err := p.learn()
	if errors.Is(err, unix.ENXIO) {
		return nil, fmt.Errorf("%s=%s: %w: make the pool first (lvcreate --type thin-pool, or dmsetup create with a thin-pool table), or drop the option for a pool of the driver's own", OptThinPool, name, drivers.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// learn reads the pool's table and status: its numbers, block size and
// zeroing, and whether it is writable.
func (p *pool) learn() (poolTable, error) {
	info, err := p.ctl.Info(p.name)
	if err != nil {
		return poolTable{}, fmt.Errorf("thin-pool %s: %w", p.name, err)
	}
	t, err := p.ctl.Table(p.name)
	if err != nil {
		return poolTable{}, err
	}
	if t.Type != "thin-pool" {
		return poolTable{}, fmt.Errorf("device-mapper device %s is a %s, not a thin-pool: %w", p.name, t.Type, drivers.ErrInvalidArgument)
	}
	pt, err := parsePoolTable(t.Params)
	if err != nil {
		return pt, err
	}
	p.dev = fmt.Sprintf("%d:%d", info.Major, info.Minor)
	p.blockSize = int64(pt.BlockSectors) * sectorSize
	p.zeroes = !pt.SkipZeroing
	st, err := p.status()
	if err != nil {
		return pt, err
	}
	if st.Mode != "rw" || st.NeedsCheck {
		return pt, fmt.Errorf("thin-pool %s is %s (needs_check %v); repair it with thin_check/thin_repair or give it more space: %w", p.name, st.Mode, st.NeedsCheck, drivers.ErrUnavailable)
	}
	return pt, nil
}

func (p *pool) status() (poolStatus, error) {
	t, err := p.ctl.Status(p.name)
	if err != nil {
		return poolStatus{}, err
	}
	return parsePoolStatus(t.Params)
}

// used returns the bytes of data blocks the pool has handed out.
func (p *pool) used() (int64, error) {
	st, err := p.status()
	if err != nil {
		return 0, err
	}
	return int64(st.UsedData) * p.blockSize, nil
}

// close removes the driver's own pool, deferred while thin devices still
// hold it; the loop devices go with it.
func (p *pool) close() error {
	if !p.own {
		return nil
	}
	_, err := p.ctl.Remove(p.name, true)
	if errors.Is(err, unix.ENXIO) {
		return nil
	}
	return err
}

func (p *pool) message(format string, args ...any) error {
	return p.ctl.Message(p.name, fmt.Sprintf(format, args...))
}

// thin names thin device id of this pool.
func (p *pool) thin(id uint32) string { return fmt.Sprintf("%s-snap-%d", p.name, id) }

// mapped returns the bytes thin device name maps, shared or not.
func (p *pool) mapped(name string) (int64, error) {
	t, err := p.ctl.Status(name)
	if err != nil {
		return 0, err
	}
	n, err := parseThinStatus(t.Params)
	return int64(n) * sectorSize, err
}

// loadGeometry returns the geometry the home's pool was made with, or
// records the options' for a new pool. Options that contradict a made
// pool are refused rather than ignored.
func loadGeometry(dir string, c config) (geometry, error) {
	path := filepath.Join(dir, "pool.json")
	want := geometry{DataSize: c.dataSize, MetadataSize: c.metaSize, BlockSize: c.blockSize}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return want, writeJSON(path, want)
	}
	if err != nil {
		return want, err
	}
	var g geometry
	if err := json.Unmarshal(b, &g); err != nil {
		return g, fmt.Errorf("%s: %w", path, err)
	}
	for _, o := range []struct {
		opt       string
		has, asks int64
	}{{OptDataSize, g.DataSize, want.DataSize}, {OptMetadataSize, g.MetadataSize, want.MetadataSize}, {OptBlockSize, g.BlockSize, want.BlockSize}} {
		if c.set[o.opt] && o.has != o.asks {
			return g, fmt.Errorf("%s: option %s=%d: %w: the pool in this home was made with %d bytes and keeps them; drop the option or use a new home",
				Name, o.opt, o.asks, drivers.ErrInvalidArgument, o.has)
		}
	}
	return g, nil
}

// sparse makes a sparse file of size bytes unless it exists.
func sparse(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	return errors.Join(err, f.Close())
}

func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
