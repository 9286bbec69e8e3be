package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is matched (with errors.Is) by every error Parse and Validate
// return.
var ErrInvalid = errors.New("invalid manifest")

// FieldError is a problem with one field of hearth.yaml, or with the document
// as a whole when Field is empty. Its message is meant for the user.
type FieldError struct {
	Field   string // dotted path such as "scale.max" or "env.PATH"; empty for the whole document
	Problem string // what is wrong and, where possible, how to fix it
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return FileName + ": " + e.Problem
	}
	return FileName + ": " + e.Field + ": " + e.Problem
}

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// errUnknown is returned by field decoders for a key they do not know.
var errUnknown = errors.New("unknown field")

// Parse decodes and validates one hearth.yaml document, applying defaults
// for absent fields. Parsing is strict: unknown fields (at any level),
// repeated keys, wrong types, more than one document and inputs over MaxSize
// are rejected. Every error is a *FieldError.
//
// The document is decoded into a yaml.Node tree and walked field by field
// (instead of decoding into the struct with KnownFields) so that every
// error, including a type error, names the field it is about.
func Parse(data []byte) (*Manifest, error) {
	if len(data) > MaxSize {
		return nil, &FieldError{Problem: fmt.Sprintf("is %d bytes; the limit is %d KiB", len(data), MaxSize>>10)}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Problem: "is empty"}
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(err)
		}
		return nil, &FieldError{Problem: "holds more than one YAML document; remove the extra ---"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		return nil, &FieldError{Problem: "is empty"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{Problem: "must be a mapping of fields, e.g. name: hello"}
	}
	m, err := decode(root)
	if err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// syntaxError turns a YAML parser error into a FieldError about the document.
func syntaxError(err error) error {
	return &FieldError{Problem: strings.TrimPrefix(err.Error(), "yaml: ")}
}

// decode walks the top-level mapping into a Manifest with defaults applied.
func decode(root *yaml.Node) (*Manifest, error) {
	m := &Manifest{
		Memory:      DefaultMemory,
		Timeout:     Duration(DefaultTimeout),
		Concurrency: DefaultConcurrency,
	}
	scaleMaxSet := false
	err := eachField(root, "", false, func(key string, v *yaml.Node) error {
		var err error
		switch key {
		case "name":
			m.Name, err = str(v)
		case "isolation":
			m.Isolation, err = str(v)
		case "protocol":
			m.Protocol, err = str(v)
		case "module":
			m.Module, err = str(v)
		case "command":
			m.Command, err = strList(v, "command")
		case "rootfs":
			m.RootFS, err = str(v)
		case "memory":
			err = m.Memory.UnmarshalYAML(v)
		case "timeout":
			err = m.Timeout.UnmarshalYAML(v)
		case "concurrency":
			m.Concurrency, err = integer(v)
		case "scale":
			err = eachField(v, "scale", false, func(key string, v *yaml.Node) (err error) {
				switch key {
				case "min":
					m.Scale.Min, err = integer(v)
				case "max":
					m.Scale.Max, err = integer(v)
					scaleMaxSet = true
				default:
					err = errUnknown
				}
				return err
			})
		case "allow":
			err = eachField(v, "allow", false, func(key string, v *yaml.Node) (err error) {
				switch key {
				case "files":
					m.Allow.Files, err = boolean(v)
				case "network":
					m.Allow.Network, err = boolean(v)
				default:
					err = errUnknown
				}
				return err
			})
		case "env":
			m.Env, err = strMap(v, "env")
		case "keepalive":
			m.KeepAlive, err = str(v)
		case "retry":
			err = decodeRetry(v, &m.Retry)
		case "triggers":
			m.Triggers, err = decodeTriggers(v)
		case "destinations":
			err = eachField(v, "destinations", false, func(key string, v *yaml.Node) (err error) {
				switch key {
				case "on_success":
					m.Destinations.OnSuccess, err = str(v)
				case "on_failure":
					m.Destinations.OnFailure, err = str(v)
				default:
					err = errUnknown
				}
				return err
			})
		default:
			err = errUnknown
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.Protocol == "" {
		switch m.Isolation {
		case IsolationWasm:
			m.Protocol = ProtocolWagi
		case IsolationSandbox:
			m.Protocol = ProtocolHTTP
		}
	}
	if !scaleMaxSet {
		m.Scale.Max = max(DefaultScaleMax, m.Scale.Min)
	}
	return m, nil
}

// decodeRetry decodes the retry mapping. An explicit zero is rejected here,
// because in the struct zero means "the default".
func decodeRetry(n *yaml.Node, r *Retry) error {
	return eachField(n, "retry", false, func(key string, v *yaml.Node) (err error) {
		switch key {
		case "attempts":
			if r.Attempts, err = integer(v); err == nil && r.Attempts == 0 {
				err = fmt.Errorf("0 is out of range; use 1 to %d (the total number of executions), or omit it for %d", MaxRetryAttempts, DefaultRetryAttempts)
			}
		case "backoff":
			if err = r.Backoff.UnmarshalYAML(v); err == nil && r.Backoff == 0 {
				err = fmt.Errorf("0s is out of range; use %s to %s", MinRetryBackoff, MaxRetryBackoff)
			}
		case "max_age":
			if err = r.MaxAge.UnmarshalYAML(v); err == nil && r.MaxAge == 0 {
				err = fmt.Errorf("0s is out of range; use %s to %s", MinRetryMaxAge, MaxRetryMaxAge)
			}
		default:
			err = errUnknown
		}
		return err
	})
}

// eachField calls fn for every key of the mapping n. Unless keepNull is set,
// keys with a null value are skipped: they count as absent. path names n in
// errors. Errors from fn
// that are not already FieldErrors are attributed to the key.
func eachField(n *yaml.Node, path string, keepNull bool, fn func(key string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return &FieldError{Field: path, Problem: "must be a mapping of fields"}
	}
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return &FieldError{Field: path, Problem: fmt.Sprintf("line %d: keys must be plain names", k.Line)}
		}
		field := join(path, k.Value)
		if seen[k.Value] {
			return &FieldError{Field: field, Problem: "is given more than once"}
		}
		seen[k.Value] = true
		if isNull(v) && !keepNull {
			continue
		}
		if err := fn(k.Value, v); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return fe
			}
			return &FieldError{Field: field, Problem: err.Error()}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func str(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", errors.New("must be a string")
	}
	if isNull(n) {
		return "", nil
	}
	return n.Value, nil
}

func integer(n *yaml.Node) (int, error) {
	var i int
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
		return 0, fmt.Errorf("%q is not a whole number", n.Value)
	}
	return i, nil
}

func boolean(n *yaml.Node) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, fmt.Errorf("%q is not true or false", n.Value)
	}
	return b, nil
}

// strList decodes a sequence of strings; an empty sequence yields nil.
func strList(n *yaml.Node, path string) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New(`must be a list of strings, e.g. ["./server", "--port", "8080"]`)
	}
	var out []string
	for i, e := range n.Content {
		s, err := str(resolve(e))
		if err != nil {
			return nil, &FieldError{Field: fmt.Sprintf("%s[%d]", path, i), Problem: err.Error()}
		}
		out = append(out, s)
	}
	return out, nil
}

// strMap decodes a mapping of scalars to strings (null becomes ""); an empty
// mapping yields nil.
func strMap(n *yaml.Node, path string) (map[string]string, error) {
	var out map[string]string
	err := eachField(n, path, true, func(key string, v *yaml.Node) error {
		s, err := str(v)
		if err != nil {
			return err
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[key] = s
		return nil
	})
	return out, err
}
