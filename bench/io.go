package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/layerlab/layerlab/drivers/command"
	"github.com/layerlab/layerlab/drivers/mount"
)

// appendByte opens path for appending, writes one byte and closes it: the
// first write to an inherited file, where a copy-on-write driver copies
// the file up.
func appendByte(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte{1}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copyUp times the first 1-byte append to an inherited file of each size,
// warm and (for the profile's cold sizes) with caches dropped first. Its
// floors are `cp` of the same file on the same filesystem (to show what of
// that is process start, `true`), and a durable copy: the file copied
// in-process, appended to and fsync'd, as overlayfs syncs a copy-up unless
// mounted volatile and `cp` does not.
func copyUp(ctx context.Context, r *run, t *target) error {
	cold := map[int64]bool{}
	for _, s := range r.prof.ColdSizes {
		cold[s] = true
	}
	for _, size := range r.prof.CopyUpSizes {
		parent, err := t.layer(ctx, "", func(dir string) error { return writeFile(filepath.Join(dir, "file"), size, size) })
		if err != nil {
			return err
		}
		for _, isCold := range []bool{false, true} {
			if isCold && !cold[size] {
				continue
			}
			pt := point{Workload: "copy-up", Op: "append-1b", Target: t.info.ID, Param: "size", Value: float64(size), Cold: isCold}
			for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
				c, err := t.child(ctx, parent)
				if err != nil {
					return err
				}
				if isCold {
					if err := dropCaches(); err != nil {
						return err
					}
				}
				if err := r.recorderFor(i).time(pt, func() error { return appendByte(filepath.Join(c.dir, "file")) }); err != nil {
					return err
				}
				if err := c.release(ctx); err != nil {
					return err
				}
			}
		}
		if err := copyFloor(ctx, r, t, size); err != nil {
			return err
		}
	}
	return nil
}

func copyFloor(ctx context.Context, r *run, t *target, size int64) error {
	cp := point{Workload: "copy-up", Op: "append-1b", Target: "floor:cp/" + t.info.Backing, Floor: true, Param: "size", Value: float64(size)}
	durable := point{Workload: "copy-up", Op: "append-1b", Target: "floor:copy+fsync/" + t.info.Backing, Floor: true, Param: "size", Value: float64(size)}
	exe := point{Workload: "copy-up", Op: "append-1b", Target: "floor:exec-true", Floor: true, Param: "size", Value: float64(size)}
	if r.seenFloor(cp.Target, size) {
		return nil // one set of floors per backing filesystem and size
	}
	r.noteOnce("copy-floors", "copy-up floors: floor:cp/<fs> runs `cp` of the file on the same filesystem (no fsync; floor:exec-true is what of it is process start); floor:copy+fsync/<fs> copies it in-process (copy_file_range), appends the byte and fsyncs: the cost of a copy-up whose data is durable, as overlayfs makes it unless mounted with overlay's volatile option (driver option volatile=true)")
	src := filepath.Join(t.work, "floor-src")
	dst := filepath.Join(t.work, "floor-dst")
	if err := writeFile(src, size, size); err != nil {
		return err
	}
	defer os.Remove(src)
	defer os.Remove(dst)
	for i := 0; i < r.prof.Warmup+r.prof.N; i++ {
		rec := r.recorderFor(i)
		if err := rec.time(cp, func() error {
			_, err := command.Run(ctx, "cp", src, dst)
			return err
		}); err != nil {
			return err
		}
		os.Remove(dst)
		if err := rec.time(durable, func() error { return durableCopy(src, dst) }); err != nil {
			return err
		}
		os.Remove(dst)
		if err := rec.time(exe, func() error {
			_, err := command.Run(ctx, "true")
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// durableCopy copies src to a new dst (io.Copy between files uses
// copy_file_range, as overlayfs's copy-up does), appends one byte and
// fsyncs dst.
func durableCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	if _, err := out.Write([]byte{1}); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// smallFiles appends to every file of a parent holding N small files, one
// after the other and then from several goroutines at once: the copy-up
// storm a package manager or a log rotation causes.
func smallFiles(ctx context.Context, r *run, t *target) error {
	for _, n := range r.prof.SmallFiles {
		parent, err := t.layer(ctx, "", func(dir string) error {
			for i := 0; i < n; i++ {
				sub := filepath.Join(dir, fmt.Sprintf("d%d", i/1000))
				if i%1000 == 0 {
					if err := os.Mkdir(sub, 0o755); err != nil {
						return err
					}
				}
				if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", i)), pattern(4096, int64(i)), 0o644); err != nil {
					return err
				}
			}
			return mount.SyncFS(dir)
		})
		if err != nil {
			return err
		}
		for _, par := range []int{1, r.prof.Parallel} {
			pt := point{Workload: "small-files", Op: fmt.Sprintf("append-all/%d-threads", par), Target: t.info.ID, Param: "files", Value: float64(n)}
			samples := max(r.prof.N/2, 3)
			for i := 0; i < r.prof.Warmup+samples; i++ {
				c, err := t.child(ctx, parent)
				if err != nil {
					return err
				}
				if err := r.recorderFor(i).time(pt, func() error { return storm(c.dir, n, par) }); err != nil {
					return err
				}
				if err := c.release(ctx); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func storm(dir string, n, par int) error {
	var wg sync.WaitGroup
	errs := make(chan error, par)
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := g; i < n; i += par {
				if err := appendByte(filepath.Join(dir, fmt.Sprintf("d%d", i/1000), fmt.Sprintf("f%d", i))); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	return <-errs
}
