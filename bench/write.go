package bench

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"time"

	"github.com/layerlab/layerlab/drivers"
	"github.com/layerlab/layerlab/drivers/mount"
)

// write measures throughput inside a mounted child of a committed parent,
// as a container writes: sequential (1 MiB writes) and random (4 KiB
// writes) into new files, which go through the union where the driver has
// one, and random 4 KiB overwrites of a file the parent holds, timed from
// the open, which a copy-on-write driver copies up first. Each ends with
// an fsync. The floor is the same on the bare backing filesystem with no
// driver (the inherited file there is just a file).
func write(ctx context.Context, r *run, t *target) error {
	size := r.prof.WriteBytes
	r.noteOnce("write", fmt.Sprintf("write: seq-write and rand-write write new %d MiB files in a mounted child of a committed parent, through the union where the driver has one; rand-overwrite rewrites 4 KiB blocks of a file of the same size the parent holds, timed from its open, so a copy-on-write driver's copy-up of the whole file is in it; floor:bare/<fs> does the same on the bare filesystem", size>>20))
	parent, err := t.layer(ctx, "", func(dir string) error { return writeFile(filepath.Join(dir, inherited), size, 3) })
	if err != nil {
		return err
	}
	bare := filepath.Join(t.work, "bare")
	if err := os.MkdirAll(bare, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(bare)
	floorID := "floor:bare/" + t.info.Backing
	doFloor := !r.seenFloor(floorID, 0)
	if doFloor {
		if err := writeFile(filepath.Join(bare, inherited), size, 3); err != nil {
			return err
		}
	}
	samples := max(r.prof.N/2, 3)
	for i := 0; i < r.prof.Warmup+samples; i++ {
		rec := r.recorderFor(i)
		c, err := t.child(ctx, parent)
		if err != nil {
			return err
		}
		dirs := map[string]string{t.info.ID: c.dir}
		if doFloor {
			dirs[floorID] = bare
		}
		for id, dir := range dirs {
			for _, op := range []string{"seq-write", "rand-write", "rand-overwrite"} {
				var bps float64
				if op == "rand-overwrite" {
					bps, err = overwriteThroughput(filepath.Join(dir, inherited), size, int64(i))
				} else {
					bps, err = throughput(filepath.Join(dir, op), size, op == "rand-write", int64(i))
					os.Remove(filepath.Join(dir, op))
				}
				if err != nil {
					c.release(ctx)
					return fmt.Errorf("%s on %s: %w", op, id, err)
				}
				rec.add(point{Workload: "write", Op: op, Target: id, Floor: id == floorID, Unit: "bytes/s"}, bps)
			}
		}
		if err := c.release(ctx); err != nil {
			return err
		}
	}
	return nil
}

// inherited is the file the write workload's parent holds.
const inherited = "inherited"

// throughput writes size bytes to a new file at path, sequentially in
// 1 MiB writes or at random 4 KiB offsets (the file made full-size
// first, untimed), fsyncs, and returns bytes per second.
func throughput(path string, size int64, random bool, seed int64) (float64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	block := int64(1 << 20)
	if random {
		block = 4096
		if err := f.Truncate(size); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	start := time.Now()
	if err := writeBlocks(f, size, block, random, seed); err != nil {
		return 0, err
	}
	return float64(size) / time.Since(start).Seconds(), nil
}

// overwriteThroughput opens the existing file at path for writing (where
// a copy-on-write driver copies it up), writes size bytes over it at
// random 4 KiB offsets, fsyncs, and returns bytes per second, all timed.
func overwriteThroughput(path string, size, seed int64) (float64, error) {
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if err := writeBlocks(f, size, 4096, true, seed); err != nil {
		return 0, err
	}
	return float64(size) / time.Since(start).Seconds(), nil
}

// writeBlocks writes size bytes to f in blocks, in order or shuffled, and
// fsyncs.
func writeBlocks(f *os.File, size, block int64, random bool, seed int64) error {
	buf := pattern(int(block), seed)
	offsets := make([]int64, size/block)
	for i := range offsets {
		offsets[i] = int64(i) * block
	}
	if random {
		rand.New(rand.NewSource(seed)).Shuffle(len(offsets), func(i, j int) { offsets[i], offsets[j] = offsets[j], offsets[i] })
	}
	for _, off := range offsets {
		if _, err := f.WriteAt(buf, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// writeAmp measures write amplification: bytes the backing block device
// wrote per byte the workload wrote, for random 4 KiB overwrites (each
// fsynced) of an inherited file and for a 1-byte append to it (the copy-up
// case), next to the same overwrites on the bare filesystem.
func writeAmp(ctx context.Context, r *run, t *target) error {
	if t.device == "" && t.written == nil {
		r.note(fmt.Sprintf("write-amp: %s has no block device of its own to read statistics from; not measured", t.info.ID))
		return nil
	}
	if t.written != nil {
		r.note(fmt.Sprintf("write-amp: %s counts the bytes the zfs-fuse daemon wrote to its pool file (/proc/PID/io write_bytes)", t.info.ID))
	}
	size := r.prof.AmpFileSize
	parent, err := t.layer(ctx, "", func(dir string) error { return writeFile(filepath.Join(dir, "file"), size, 7) })
	if err != nil {
		return err
	}
	bare := filepath.Join(t.work, "bare-amp")
	if err := writeFile(bare, size, 7); err != nil {
		return err
	}
	defer os.Remove(bare)
	floorID := "floor:bare/" + t.info.ID
	samples := max(r.prof.N/2, 3)
	for i := 0; i < r.prof.Warmup+samples; i++ {
		rec := r.recorderFor(i)
		c, err := t.child(ctx, parent)
		if err != nil {
			return err
		}
		file := filepath.Join(c.dir, "file")
		amp, err := t.amplification(c.dir, 1, func() error {
			if err := appendByte(file); err != nil {
				return err
			}
			return syncFile(file)
		})
		if err != nil {
			return err
		}
		rec.add(point{Workload: "write-amp", Op: "append-1b", Target: t.info.ID, Unit: "ratio"}, amp)
		for id, path := range map[string]string{t.info.ID: file, floorID: bare} {
			n := r.prof.AmpWrites
			amp, err := t.amplification(filepath.Dir(path), int64(n)*4096, func() error { return overwrite(path, size, n, int64(i)) })
			if err != nil {
				return err
			}
			rec.add(point{Workload: "write-amp", Op: "random-4k-overwrite", Target: id, Floor: id == floorID, Unit: "ratio"}, amp)
		}
		if err := c.release(ctx); err != nil {
			return err
		}
	}
	return nil
}

// amplification runs fn, which writes n bytes, and returns the device
// bytes written meanwhile over n. The filesystem is synced on both sides
// so earlier writes are not counted and fn's are.
func (t *target) amplification(dir string, n int64, fn func() error) (float64, error) {
	if err := t.flush(dir); err != nil {
		return 0, err
	}
	before, err := t.writtenBytes()
	if err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	if err := t.flush(dir); err != nil {
		return 0, err
	}
	after, err := t.writtenBytes()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// flush gets everything written under dir onto the backing store.
// syncfs does it for most filesystems; a driver that keeps its data
// elsewhere reports that store's use (drivers.SpaceReporter), which for zfs
// first forces a transaction group out (syncfs does nothing on zfs-fuse).
func (t *target) flush(dir string) error {
	if err := mount.SyncFS(dir); err != nil {
		return err
	}
	if r, ok := t.d.(drivers.SpaceReporter); ok {
		_, err := r.BackingUsed(context.Background())
		return err
	}
	return nil
}

func overwrite(path string, size int64, n int, seed int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewSource(seed))
	buf := pattern(4096, seed)
	for i := 0; i < n; i++ {
		if _, err := f.WriteAt(buf, r.Int63n(size/4096)*4096); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
