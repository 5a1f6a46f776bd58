package drivers

import "errors"

// Sentinel errors. Drivers wrap them with %w and a message that says what
// was wrong and what to do; callers test them with errors.Is.
var (
	ErrNotFound           = errors.New("not found")
	ErrAlreadyExists      = errors.New("already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrFailedPrecondition = errors.New("failed precondition")
	ErrUnavailable        = errors.New("unavailable")
	ErrNotImplemented     = errors.New("not implemented")
	ErrClosed             = errors.New("driver closed")
)
