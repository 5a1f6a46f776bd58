package devicemapper

import (
	"fmt"
	"strings"

	"github.com/layerlab/layerlab/drivers"
)

// The options New takes.
const (
	OptThinPool     = "dm.thinpooldev"  // a pool the user made (direct-lvm style): /dev/mapper/NAME or NAME
	OptDataSize     = "dm.datasize"     // the driver's own pool: sparse data file size
	OptMetadataSize = "dm.metadatasize" // the driver's own pool: sparse metadata file size
	OptBlockSize    = "dm.blocksize"    // the driver's own pool: thin block size
	OptFS           = "dm.fs"           // ext4 or xfs, made once on the base device
	OptControl      = "dm.control"      // ioctl or dmsetup
	OptSize         = "size"            // base device size: every snapshot's limit unless its label asks more
)

const (
	controlIoctl   = "ioctl"
	controlDmsetup = "dmsetup"

	// The defaults. Both files are sparse, so only what is written takes
	// space. thin_metadata_size puts 10 GiB of 64 KiB blocks shared by
	// 1000 thin devices at 9 MiB of metadata; 128 MiB leaves room for
	// many more devices and a larger data file (dockerd gives 2 GiB to
	// 100 GiB).
	defaultDataSize     = 10 << 30
	defaultMetadataSize = 128 << 20
	// 64 KiB is dm-thin's smallest block: the least a write to a shared
	// block copies. dockerd and containerd use it too.
	defaultBlockSize = 64 << 10
	// dockerd's dm.basesize default.
	defaultBaseSize = 10 << 30

	minBlockSize    = 64 << 10
	maxBlockSize    = 1 << 30
	minMetadataSize = 2 << 20
	maxMetadataSize = 16 << 30 // the kernel uses at most 15.81 GiB of it
	// maxThinID bounds thin device ids, which dm-thin keeps in 24 bits.
	maxThinID = 1<<24 - 1
)

// config is the parsed options.
type config struct {
	thinPool                      string // the user's pool, "" for the driver's own
	dataSize, metaSize, blockSize int64
	fs                            string
	control                       string
	baseSize                      int64
	set                           map[string]bool // options given, not defaulted
}

func parseOptions(opts drivers.Options) (config, error) {
	c := config{
		dataSize: defaultDataSize, metaSize: defaultMetadataSize, blockSize: defaultBlockSize,
		fs: "ext4", control: controlIoctl, baseSize: defaultBaseSize, set: map[string]bool{},
	}
	if err := opts.Check(Name, OptThinPool, OptDataSize, OptMetadataSize, OptBlockSize, OptFS, OptControl, OptSize); err != nil {
		return c, err
	}
	bad := func(k, v, want string) error {
		return fmt.Errorf("%s: option %s=%q: %w: %s", Name, k, v, drivers.ErrInvalidArgument, want)
	}
	for k, v := range opts {
		c.set[k] = true
		var err error
		switch k {
		case OptThinPool:
			c.thinPool = strings.TrimPrefix(v, mapperDir+"/")
			if c.thinPool == "" || strings.Contains(c.thinPool, "/") {
				return c, bad(k, v, "want /dev/mapper/NAME of an existing thin-pool")
			}
		case OptDataSize:
			c.dataSize, err = drivers.ParseSize(k, v)
		case OptMetadataSize:
			c.metaSize, err = drivers.ParseSize(k, v)
		case OptBlockSize:
			c.blockSize, err = drivers.ParseSize(k, v)
		case OptSize:
			c.baseSize, err = drivers.ParseSize(k, v)
		case OptFS:
			if v != "ext4" && v != "xfs" {
				return c, bad(k, v, "want ext4 or xfs")
			}
			c.fs = v
		case OptControl:
			if v != controlIoctl && v != controlDmsetup {
				return c, bad(k, v, "want ioctl or dmsetup")
			}
			c.control = v
		}
		if err != nil {
			return c, fmt.Errorf("%s: %w", Name, err)
		}
	}
	if c.thinPool != "" {
		for _, k := range []string{OptDataSize, OptMetadataSize, OptBlockSize} {
			if c.set[k] {
				return c, bad(k, opts[k], "it sizes the driver's own loopback pool, and "+OptThinPool+" names a pool of yours; drop one of them")
			}
		}
	}
	switch {
	case c.blockSize < minBlockSize || c.blockSize > maxBlockSize || c.blockSize%minBlockSize != 0:
		return c, bad(OptBlockSize, opts[OptBlockSize], "dm-thin blocks are multiples of 64K between 64K and 1G")
	case c.metaSize < minMetadataSize || c.metaSize > maxMetadataSize:
		return c, bad(OptMetadataSize, opts[OptMetadataSize], "want between 2M and 16G")
	case c.dataSize < 16*c.blockSize:
		return c, bad(OptDataSize, opts[OptDataSize], fmt.Sprintf("want at least 16 blocks (%d bytes)", 16*c.blockSize))
	case c.baseSize < 1<<20 || c.baseSize%sectorSize != 0:
		return c, bad(OptSize, opts[OptSize], "want at least 1M, in whole 512-byte sectors")
	}
	c.dataSize -= c.dataSize % c.blockSize
	return c, nil
}
