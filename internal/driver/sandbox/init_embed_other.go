//go:build linux && !amd64 && !arm64

package sandbox

// initBinary is empty: the driver re-executes Hearth's own binary as init.
var initBinary []byte
