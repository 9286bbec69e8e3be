package wasm

import "golang.org/x/sys/unix"

// memfdCreate returns an anonymous memory-backed file for a snapshot image.
func memfdCreate(name string) (int, error) {
	return unix.MemfdCreate(name, unix.MFD_CLOEXEC)
}
