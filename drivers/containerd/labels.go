package containerd

import (
	"context"
	"fmt"
	"strconv"

	"github.com/layerlab/layerlab/drivers"
)

// The labels containerd and its CRI plugin send that mean something to a
// layerlab driver. containerd's metadata store passes a snapshotter only
// the labels named containerd.io/snapshot/... and containerd.io/snapshot.ref
// (snapshots.FilterInheritedLabels), so a label meant for the driver must
// carry that prefix to arrive at all; layerlab's own drivers.LabelSize
// never would.
const (
	// LabelSnapshotRef names the committed snapshot an unpack's Prepare
	// will become (the layer's chain ID). When the driver already holds a
	// committed snapshot with this ref on the same parent, Prepare answers
	// AlreadyExists and containerd reuses it instead of unpacking the layer
	// again: an image unpacked in one containerd namespace (ctr's default)
	// costs nothing more in another (the CRI plugin's k8s.io).
	LabelSnapshotRef = "containerd.io/snapshot.ref"
	// LabelSize asks for a size limit on an active snapshot, in bytes or
	// with a unit ("64M", binary units as dockerd's size= takes); drivers
	// with quota (btrfs qgroups, zfs quota, overlay2 on xfs prjquota,
	// devicemapper) enforce it.
	LabelSize = "containerd.io/snapshot/layerlab.io/size"
	// LabelRootfsSize is the rootfs size limit, in bytes, that containerd's
	// CRI plugin sets from a container's resources. containerd 2.x sets it
	// only for Windows containers and has no Linux counterpart (there is no
	// max-size label on Linux), but a client may set it, and it means the
	// same as LabelSize.
	LabelRootfsSize = "containerd.io/snapshot/windows/rootfs.sizebytes"
	// LabelUIDMapping and LabelGIDMapping ask the snapshotter to shift file
	// ownership for a pod in a user namespace. No layerlab driver can, and
	// a rootfs with the wrong owners fails in confusing ways later, so the
	// request is refused now.
	LabelUIDMapping = "containerd.io/snapshot/uidmapping"
	LabelGIDMapping = "containerd.io/snapshot/gidmapping"
)

// activeLabels turns the labels of a Prepare into the driver's: a size
// label becomes drivers.LabelSize (refused on a driver without quota),
// ownership mappings are refused.
func (a Snapshotter) activeLabels(labels map[string]string) (map[string]string, error) {
	for _, k := range []string{LabelUIDMapping, LabelGIDMapping} {
		if v, ok := labels[k]; ok {
			return nil, fmt.Errorf("label %s=%q: %w: layerlab's drivers cannot remap file ownership for a user namespace; run the pod without hostUsers: false, or use a snapshotter that supports idmapped mounts", k, v, drivers.ErrNotImplemented)
		}
	}
	var size int64 = -1
	for _, k := range []string{LabelRootfsSize, LabelSize} { // LabelSize wins
		v, ok := labels[k]
		if !ok {
			continue
		}
		n, err := drivers.ParseSize(k, v)
		if err != nil {
			return nil, err
		}
		size = n
	}
	if size < 0 {
		return labels, nil
	}
	if d, ok := a.S.(drivers.Driver); ok {
		if c := d.Capabilities(); !c.Quota {
			return nil, fmt.Errorf("size label: %w: this driver cannot limit a snapshot's size: %s", drivers.ErrInvalidArgument, c.QuotaNote)
		}
	}
	out := make(map[string]string, len(labels)+1)
	for k, v := range labels {
		out[k] = v
	}
	out[drivers.LabelSize] = strconv.FormatInt(size, 10)
	return out, nil
}

// existingRef returns an AlreadyExists error when the driver holds a
// committed snapshot that labels' snapshot.ref names on parent: containerd
// then finds it with Walk (labels."containerd.io/snapshot.ref"==REF,
// parent==PARENT) and records it under its own key.
func (a Snapshotter) existingRef(ctx context.Context, parent string, labels map[string]string) error {
	ref, ok := labels[LabelSnapshotRef]
	if !ok || ref == "" {
		return nil
	}
	f := drivers.Filter{Kind: drivers.KindCommitted, Parent: parent, Base: parent == "", Labels: map[string]string{LabelSnapshotRef: ref}}
	found := ""
	err := a.S.Walk(ctx, func(_ context.Context, i drivers.Info) error {
		if found == "" && f.Match(i) {
			found = i.Name
		}
		return nil
	}, f)
	if err != nil {
		return Err(err)
	}
	if found != "" {
		return Err(fmt.Errorf("target snapshot %q: held as %q: %w", ref, found, drivers.ErrAlreadyExists))
	}
	return nil
}
