// Package hearth carries, besides the code under internal/, the sources of
// the bundled example functions and of the guest SDK they use, so that
// `hearth up --demo` and `hearth bench` can build and deploy them from the
// binary alone wherever a Go toolchain is installed.
package hearth

import "embed"

// Sources holds examples/ and sdk/ as they were when the binary was built.
//
//go:embed examples sdk
var Sources embed.FS

// ModulePath is this module's path; extracted sources build under it so the
// examples' imports of the SDK resolve without a network.
const ModulePath = "github.com/hearthdev/hearth"
