//go:build !linux

// Package sandbox is Hearth's Linux sandbox driver; on other systems only
// MaybeRunInit exists, so that main can call it unconditionally.
package sandbox

// MaybeRunInit does nothing outside Linux.
func MaybeRunInit() {}
