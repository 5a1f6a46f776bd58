package drivers

import "context"

// SpaceReporter is implemented by drivers whose data does not live in the
// filesystem of their home, such as devicemapper's thin-pool (on files in
// the home, or on a device of the user's): BackingUsed returns the bytes
// in use on that backing store. drivertest measures a driver's
// granularity with it instead of statfs of the home.
type SpaceReporter interface {
	BackingUsed(ctx context.Context) (int64, error)
}
