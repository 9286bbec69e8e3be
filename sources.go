// Package hearth carries, besides the code under internal/, the sources of
// the bundled example functions and of the guest SDK they use, so that
// `hearth up --demo` and `hearth bench` can build and deploy them from the
// binary alone wherever a Go toolchain is installed.
package hearth

import "embed"

// Sources holds examples/, sdk/, go.mod and go.sum as they were when the
// binary was built.
//
//go:embed examples sdk go.mod go.sum
var Sources embed.FS
