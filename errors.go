package workshop

import (
	"errors"
	"fmt"
)

// Error codes. Transports map them to their own (HTTP status, exit code).
const (
	EINVALID      = "invalid"      // the caller's input is wrong
	ENOTFOUND     = "not_found"    // no such thing, or not the caller's
	ECONFLICT     = "conflict"     // the thing is in a state that forbids this
	ETOOMANY      = "too_many"     // over a quota
	EUNAUTHORIZED = "unauthorized" // no or wrong credentials
	EFORBIDDEN    = "forbidden"    // credentials fine, but not allowed
	ETOOLARGE     = "too_large"    // body or file over its limit
	EUNAVAILABLE  = "unavailable"  // shutting down, or a dependency is away
	EINTERNAL     = "internal"     // a bug or an I/O failure
)

// Error is an error meant for the caller: a code and a message they can act on.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err's *Error, or EINTERNAL for any other error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return EINTERNAL
}

// ErrorMessage returns the message of err's *Error, or a generic message for
// any other error, so internal details do not leak to callers.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
