//go:build unix && !linux

package wasm

import "errors"

// memfdCreate is Linux-only: elsewhere reactor modules cannot be snapshotted
// and fail to prepare, while command modules run normally.
func memfdCreate(string) (int, error) {
	return -1, errors.New("reactor snapshots need Linux (memfd)")
}
