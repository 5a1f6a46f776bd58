package drivers

// Strategy is how a driver keeps a child's changes apart from its parent.
type Strategy string

// The strategies layerlab compares.
const (
	// CopyOnWrite copies data up on the first write (aufs, overlay): the
	// old data is read and written again before the change lands.
	CopyOnWrite Strategy = "copy-on-write"
	// RedirectOnWrite writes new data to new blocks and redirects the
	// snapshot's pointers to them (btrfs, zfs, dm-thin): one write.
	RedirectOnWrite Strategy = "redirect-on-write"
	// FullCopy copies the whole parent when a snapshot is created (vfs).
	FullCopy Strategy = "full-copy"
)

// Granularity is the unit a driver copies or redirects.
type Granularity string

// The granularities.
const (
	GranularityFile     Granularity = "file"     // whole files are copied up
	GranularityBlock    Granularity = "block"    // only the touched blocks
	GranularitySnapshot Granularity = "snapshot" // the whole tree, at creation
)

// Capabilities is what a driver declares about itself. drivertest checks
// the declaration against the backing store.
type Capabilities struct {
	Strategy    Strategy    `json:"strategy"`
	Granularity Granularity `json:"granularity"`
	// Quota says whether a per-snapshot size limit can be enforced, and
	// QuotaNote how or why not.
	Quota     bool   `json:"quota"`
	QuotaNote string `json:"quota_note,omitempty"`
	// Kernel lists the kernel features the driver needs.
	Kernel []string `json:"kernel"`
	// MaxDepth is the deepest parent chain the driver mounts, 0 if unbounded.
	MaxDepth int `json:"max_depth,omitempty"`
	// DeferredRemove says Remove of a snapshot that is still mounted
	// succeeds and the storage goes when the last mount does (devicemapper's
	// deferred device removal). Without it such a Remove is refused.
	DeferredRemove bool `json:"deferred_remove,omitempty"`
	// Notes are facts that qualify the above, such as the copy method vfs
	// chose for its home.
	Notes []string `json:"notes,omitempty"`
}
