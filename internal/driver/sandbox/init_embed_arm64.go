//go:build linux

package sandbox

import _ "embed"

//go:embed initbin/hearth-init.linux-arm64
var initBinary []byte
