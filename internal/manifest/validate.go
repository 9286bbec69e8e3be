package manifest

import (
	"fmt"
	"github.com/hearthdev/hearth/internal/keepalive"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits enforced by Validate.
const (
	MinMemory      = Mi
	MaxMemory      = 16 * Gi
	MinTimeout     = Duration(time.Millisecond)
	MaxTimeout     = Duration(15 * time.Minute)
	MaxConcurrency = 1000
	MaxScale       = 1000
	MaxEnvEntries  = 128
	MaxEnvSize     = 32 << 10 // sum of len(key)+len(value) over env
)

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks m against the rules of hearth.yaml and returns the first
// problem found as a *FieldError. It does not apply defaults: use it on a
// Manifest that came from Parse, or one decoded from JSON that Parse made.
func (m *Manifest) Validate() error {
	for _, check := range []func() *FieldError{
		m.checkName, m.checkIsolation, m.checkModule, m.checkCommand, m.checkRootFS,
		m.checkLimits, m.checkEnv, m.checkAllow, m.checkRetry, m.checkDestinations,
		m.checkKeepAlive, m.checkTriggers,
	} {
		if fe := check(); fe != nil {
			return fe
		}
	}
	return nil
}

// checkKeepAlive checks the keep-alive policy name.
func (m *Manifest) checkKeepAlive() *FieldError {
	if m.KeepAlive == "" {
		return nil
	}
	if _, err := keepalive.New(m.KeepAlive); err != nil {
		return bad("keepalive", "%q is not a keep-alive policy; use hearth, hybrid or fixed-<duration> such as fixed-10m", m.KeepAlive)
	}
	return nil
}

func bad(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func (m *Manifest) checkName() *FieldError {
	switch {
	case m.Name == "":
		return bad("name", "is required")
	case !nameRE.MatchString(m.Name):
		return bad("name", "%q is not a valid name; use 1 to 63 lowercase letters, digits and dashes, starting and ending with a letter or digit", m.Name)
	}
	return nil
}

// checkIsolation checks isolation and the protocol it allows.
func (m *Manifest) checkIsolation() *FieldError {
	var protocols []string
	switch m.Isolation {
	case "":
		return bad("isolation", "is required; use wasm or sandbox")
	case IsolationWasm:
		protocols = []string{ProtocolWagi}
	case IsolationSandbox:
		protocols = []string{ProtocolHTTP, ProtocolLambda}
	case "microvm", "gvisor":
		return bad("isolation", "%q is not supported yet (microvm and gvisor are not supported yet); use wasm or sandbox", m.Isolation)
	default:
		return bad("isolation", "%q is not an isolation tier; use wasm or sandbox", m.Isolation)
	}
	want := strings.Join(protocols, " or ")
	if m.Protocol == "" {
		return bad("protocol", "is required; use %s", want)
	}
	for _, p := range protocols {
		if m.Protocol == p {
			return nil
		}
	}
	return bad("protocol", "%q is not available for %s functions; use %s", m.Protocol, m.Isolation, want)
}

func (m *Manifest) checkModule() *FieldError {
	if m.Isolation != IsolationWasm {
		if m.Module != "" {
			return bad("module", "is only for wasm functions; sandbox functions use command")
		}
		return nil
	}
	mod := m.Module
	if mod == "" {
		return bad("module", "is required for wasm functions; name the .wasm file, e.g. hello.wasm")
	}
	if fe := checkFilePath("module", mod); fe != nil {
		return fe
	}
	if !strings.HasSuffix(mod, ".wasm") || path.Base(mod) == ".wasm" {
		return bad("module", "%q is not a .wasm file", mod)
	}
	return nil
}

// checkFilePath checks that p names a file inside the function directory:
// relative, clean, staying inside.
func checkFilePath(field, p string) *FieldError {
	switch {
	case strings.ContainsRune(p, 0) || !utf8.ValidString(p):
		return bad(field, "%q is not a valid file name", p)
	case strings.Contains(p, `\`):
		return bad(field, "%q contains a backslash; separate directories with /", p)
	case path.IsAbs(p):
		return bad(field, "%q is absolute; give a path relative to the function directory", p)
	case p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.."):
		return bad(field, "%q leaves the function directory", p)
	case path.Clean(p) != p:
		return bad(field, "%q is not a clean relative path; use %q", p, path.Clean(p))
	}
	return nil
}

// rootFSSuffixes are the archive formats a rootfs may have.
var rootFSSuffixes = []string{".tar", ".tar.gz", ".tgz"}

// checkRootFS checks the root file system archive of a sandbox function.
func (m *Manifest) checkRootFS() *FieldError {
	if m.RootFS == "" {
		return nil
	}
	if m.Isolation != IsolationSandbox {
		return bad("rootfs", "is only for sandbox functions; a wasm module has no root file system")
	}
	if fe := checkFilePath("rootfs", m.RootFS); fe != nil {
		return fe
	}
	base := path.Base(m.RootFS)
	for _, suf := range rootFSSuffixes {
		if strings.HasSuffix(base, suf) && base != suf {
			return nil
		}
	}
	return bad("rootfs", "%q is not a tar archive; name a .tar, .tar.gz or .tgz file in the function directory, e.g. from docker export", m.RootFS)
}

func (m *Manifest) checkCommand() *FieldError {
	if m.Isolation != IsolationSandbox {
		if len(m.Command) > 0 {
			return bad("command", "is only for sandbox functions; wasm functions use module")
		}
		return nil
	}
	if len(m.Command) == 0 {
		return bad("command", `is required for sandbox functions, e.g. ["./server"]`)
	}
	for i, arg := range m.Command {
		field := fmt.Sprintf("command[%d]", i)
		switch {
		case arg == "":
			return bad(field, "is empty")
		case strings.ContainsRune(arg, 0):
			return bad(field, "contains a NUL byte")
		case !utf8.ValidString(arg):
			return bad(field, "is not valid UTF-8")
		}
	}
	return nil
}

func (m *Manifest) checkLimits() *FieldError {
	switch {
	case m.Memory < MinMemory || m.Memory > MaxMemory:
		return bad("memory", "%s is out of range; use %s to %s", m.Memory, MinMemory, MaxMemory)
	case m.Timeout < MinTimeout || m.Timeout > MaxTimeout:
		return bad("timeout", "%s is out of range; use %s to %s", m.Timeout, MinTimeout, MaxTimeout)
	case m.Concurrency < 1 || m.Concurrency > MaxConcurrency:
		return bad("concurrency", "%d is out of range; use 1 to %d", m.Concurrency, MaxConcurrency)
	case m.Scale.Min < 0 || m.Scale.Min > MaxScale:
		return bad("scale.min", "%d is out of range; use 0 to %d", m.Scale.Min, MaxScale)
	case m.Scale.Max < 1 || m.Scale.Max > MaxScale:
		return bad("scale.max", "%d is out of range; use 1 to %d", m.Scale.Max, MaxScale)
	case m.Scale.Min > m.Scale.Max:
		return bad("scale", "min %d is greater than max %d", m.Scale.Min, m.Scale.Max)
	}
	return nil
}

func (m *Manifest) checkEnv() *FieldError {
	if len(m.Env) > MaxEnvEntries {
		return bad("env", "has %d variables; the limit is %d", len(m.Env), MaxEnvEntries)
	}
	size := 0
	for _, k := range slices.Sorted(maps.Keys(m.Env)) { // sorted: report the same problem every time
		v := m.Env[k]
		size += len(k) + len(v)
		switch {
		case !envKeyRE.MatchString(k):
			return bad("env", "%q is not a valid variable name; use letters, digits and _, not starting with a digit", k)
		case strings.ContainsRune(v, 0):
			return bad("env."+k, "contains a NUL byte")
		case !utf8.ValidString(v):
			return bad("env."+k, "is not valid UTF-8")
		}
	}
	if size > MaxEnvSize {
		return bad("env", "is %d bytes in total; the limit is %d KiB", size, MaxEnvSize>>10)
	}
	return nil
}

func (m *Manifest) checkAllow() *FieldError {
	if m.Allow.Network && m.Isolation == IsolationWasm {
		return bad("allow.network", "wasm functions have no network; use isolation: sandbox for network access")
	}
	return nil
}
