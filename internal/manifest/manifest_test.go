package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const wasmBase = "name: hello\nisolation: wasm\nmodule: hello.wasm\n"
const sandboxBase = "name: web\nisolation: sandbox\ncommand: [\"./server\"]\n"

func TestParseDefaults(t *testing.T) {
	m, err := Parse([]byte(wasmBase))
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		Name: "hello", Isolation: IsolationWasm, Protocol: ProtocolWagi, Module: "hello.wasm",
		Memory: DefaultMemory, Timeout: Duration(DefaultTimeout), Concurrency: DefaultConcurrency,
		Scale: Scale{Min: 0, Max: DefaultScaleMax},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}

	m, err = Parse([]byte(sandboxBase))
	if err != nil {
		t.Fatal(err)
	}
	if m.Protocol != ProtocolHTTP {
		t.Errorf("sandbox default protocol = %q, want http", m.Protocol)
	}
}

func TestParseFull(t *testing.T) {
	src := `
name: hello                 # [a-z0-9-], 1..63 chars
isolation: sandbox
protocol: lambda
command: ["./bootstrap", "--flag"]
rootfs: images/alpine.tar.gz
memory: 256Mi
timeout: 1m30s
concurrency: 4
scale: {min: 1, max: 20}
env: {GREETING: hello, PORT_HINT: 8080, EMPTY: ""}
allow: {files: true, network: true}
`
	m, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		Name: "hello", Isolation: IsolationSandbox, Protocol: ProtocolLambda,
		Command: []string{"./bootstrap", "--flag"}, RootFS: "images/alpine.tar.gz", Memory: 256 * Mi,
		Timeout: Duration(90 * time.Second), Concurrency: 4, Scale: Scale{1, 20},
		Env:   map[string]string{"GREETING": "hello", "PORT_HINT": "8080", "EMPTY": ""},
		Allow: Allow{Files: true, Network: true},
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(*Manifest) bool
	}{
		{"name one char", "name: a\nisolation: wasm\nmodule: a.wasm", func(m *Manifest) bool { return m.Name == "a" }},
		{"name 63 chars", "name: " + strings.Repeat("a", 63) + "\nisolation: wasm\nmodule: a.wasm", nil},
		{"name digits and dashes", "name: 1-a-2\nisolation: wasm\nmodule: a.wasm", nil},
		{"name numeric", "name: 123\nisolation: wasm\nmodule: a.wasm", func(m *Manifest) bool { return m.Name == "123" }},
		{"explicit wagi", wasmBase + "protocol: wagi", nil},
		{"sandbox http", sandboxBase + "protocol: http", nil},
		{"module in subdir", "name: a\nisolation: wasm\nmodule: bin/a.wasm", nil},
		{"memory Mi", wasmBase + "memory: 128Mi", func(m *Manifest) bool { return m.Memory == 128*Mi }},
		{"memory Gi", wasmBase + "memory: 1Gi", func(m *Manifest) bool { return m.Memory == Gi }},
		{"memory Ki", wasmBase + "memory: 2048Ki", func(m *Manifest) bool { return m.Memory == 2*Mi }},
		{"memory M", wasmBase + "memory: 64M", func(m *Manifest) bool { return m.Memory == 64e6 }},
		{"memory G", wasmBase + "memory: 1G", func(m *Manifest) bool { return m.Memory == 1e9 }},
		{"memory int", wasmBase + "memory: 1048576", func(m *Manifest) bool { return m.Memory == Mi }},
		{"memory quoted int", wasmBase + "memory: \"1048576\"", func(m *Manifest) bool { return m.Memory == Mi }},
		{"memory min", wasmBase + "memory: 1Mi", nil},
		{"memory max", wasmBase + "memory: 16Gi", nil},
		{"timeout ms", wasmBase + "timeout: 500ms", func(m *Manifest) bool { return m.Timeout == Duration(500*time.Millisecond) }},
		{"timeout min", wasmBase + "timeout: 1ms", nil},
		{"timeout max", wasmBase + "timeout: 15m", nil},
		{"concurrency max", wasmBase + "concurrency: 1000", nil},
		{"scale max only", wasmBase + "scale: {max: 1}", func(m *Manifest) bool { return m.Scale == Scale{0, 1} }},
		{"scale min raises default max", wasmBase + "scale: {min: 50}", func(m *Manifest) bool { return m.Scale == Scale{50, 50} }},
		{"scale equal", wasmBase + "scale: {min: 1000, max: 1000}", nil},
		{"null counts as absent", wasmBase + "memory: ~\nscale:\n", func(m *Manifest) bool { return m.Memory == DefaultMemory && m.Scale.Max == 10 }},
		{"env null value is empty", wasmBase + "env: {A: ~}", func(m *Manifest) bool { return m.Env["A"] == "" && len(m.Env) == 1 }},
		{"env underscore", wasmBase + "env: {_x9: y}", nil},
		{"empty env is nil", wasmBase + "env: {}", func(m *Manifest) bool { return m.Env == nil }},
		{"wasm allow files", wasmBase + "allow: {files: true}", func(m *Manifest) bool { return m.Allow.Files }},
		{"sandbox network", sandboxBase + "allow: {network: true}", func(m *Manifest) bool { return m.Allow.Network }},
		{"aliases", "name: &n hello\nisolation: wasm\nmodule: hello.wasm\nenv: {NAME: *n}", func(m *Manifest) bool { return m.Env["NAME"] == "hello" }},
		{"explicit document start", "---\n" + wasmBase, nil},
		{"rootfs tar.gz", sandboxBase + "rootfs: image.tar.gz", func(m *Manifest) bool { return m.RootFS == "image.tar.gz" }},
		{"rootfs tar in subdir", sandboxBase + "rootfs: images/alpine.tar", nil},
		{"rootfs tgz", sandboxBase + "rootfs: root.tgz", nil},
		{"rootfs null is absent", sandboxBase + "rootfs: ~", func(m *Manifest) bool { return m.RootFS == "" }},
		{"block style command", "name: web\nisolation: sandbox\ncommand:\n  - ./server\n  - -v\n", func(m *Manifest) bool { return len(m.Command) == 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.check != nil && !tt.check(m) {
				t.Errorf("unexpected result %+v", m)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	env := func(n, size int) string {
		var b strings.Builder
		b.WriteString(wasmBase + "env:\n")
		for i := range n {
			fmt.Fprintf(&b, "  K%d: %q\n", i, strings.Repeat("v", size))
		}
		return b.String()
	}
	tests := []struct {
		name, yaml     string
		field, problem string // problem: substring
	}{
		// Document level.
		{"empty", "", "", "is empty"},
		{"comment only", "# nothing\n", "", "is empty"},
		{"null document", "~\n", "", "is empty"},
		{"not a mapping", "- a\n- b\n", "", "must be a mapping"},
		{"scalar document", "hello\n", "", "must be a mapping"},
		{"syntax error", "name: [unclosed\n", "", "line"},
		{"tab indentation", "name: a\n\tisolation: wasm\n", "", "line"},
		{"two documents", wasmBase + "---\n" + wasmBase, "", "more than one YAML document"},
		{"too large", wasmBase + "#" + strings.Repeat("x", MaxSize), "", "limit is 64 KiB"},
		{"unknown field", wasmBase + "colour: blue\n", "colour", "unknown field"},
		{"unknown nested field", wasmBase + "scale: {min: 1, maximum: 3}\n", "scale.maximum", "unknown field"},
		{"unknown allow field", wasmBase + "allow: {disk: true}\n", "allow.disk", "unknown field"},
		{"merge key", "base: &b {name: a}\n<<: *b\n", "base", "unknown field"},
		{"duplicate key", wasmBase + "name: other\n", "name", "more than once"},
		{"duplicate env key", wasmBase + "env: {A: 1, A: 2}\n", "env.A", "more than once"},
		{"complex key", wasmBase + "? [a, b]\n: c\n", "", "plain names"},

		// name
		{"name missing", "isolation: wasm\nmodule: a.wasm\n", "name", "is required"},
		{"name empty", "name: ''\nisolation: wasm\nmodule: a.wasm\n", "name", "is required"},
		{"name uppercase", "name: Hello\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name leading dash", "name: -a\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name trailing dash", "name: a-\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name underscore", "name: a_b\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name dot", "name: a.b\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name 64 chars", "name: " + strings.Repeat("a", 64) + "\nisolation: wasm\nmodule: a.wasm\n", "name", "not a valid name"},
		{"name not a string", "name: [a]\nisolation: wasm\nmodule: a.wasm\n", "name", "must be a string"},

		// isolation and protocol
		{"isolation missing", "name: a\nmodule: a.wasm\n", "isolation", "is required"},
		{"isolation unknown", "name: a\nisolation: docker\n", "isolation", `"docker" is not an isolation tier`},
		{"isolation microvm", "name: a\nisolation: microvm\n", "isolation", "microvm and gvisor are not supported yet"},
		{"isolation gvisor", "name: a\nisolation: gvisor\n", "isolation", "microvm and gvisor are not supported yet"},
		{"wasm http", wasmBase + "protocol: http\n", "protocol", "use wagi"},
		{"wasm lambda", wasmBase + "protocol: lambda\n", "protocol", "use wagi"},
		{"sandbox wagi", sandboxBase + "protocol: wagi\n", "protocol", "use http or lambda"},
		{"protocol unknown", sandboxBase + "protocol: grpc\n", "protocol", `"grpc"`},

		// module
		{"module missing", "name: a\nisolation: wasm\n", "module", "is required"},
		{"module on sandbox", sandboxBase + "module: a.wasm\n", "module", "only for wasm"},
		{"module absolute", "name: a\nisolation: wasm\nmodule: /a.wasm\n", "module", "absolute"},
		{"module dotdot", "name: a\nisolation: wasm\nmodule: ../a.wasm\n", "module", "leaves the function directory"},
		{"module inner dotdot", "name: a\nisolation: wasm\nmodule: x/../../a.wasm\n", "module", "leaves the function directory"},
		{"module backslash", "name: a\nisolation: wasm\nmodule: 'x\\a.wasm'\n", "module", "backslash"},
		{"module unclean", "name: a\nisolation: wasm\nmodule: ./a.wasm\n", "module", `use "a.wasm"`},
		{"module double slash", "name: a\nisolation: wasm\nmodule: x//a.wasm\n", "module", "not a clean relative path"},
		{"module not wasm", "name: a\nisolation: wasm\nmodule: a.wat\n", "module", "not a .wasm file"},
		{"module NUL", "name: a\nisolation: wasm\nmodule: \"a\\0.wasm\"\n", "module", "not a valid file name"},

		// command
		{"command missing", "name: a\nisolation: sandbox\n", "command", "is required"},
		{"command empty list", "name: a\nisolation: sandbox\ncommand: []\n", "command", "is required"},
		{"command on wasm", wasmBase + "command: [x]\n", "command", "only for sandbox"},
		{"command string", "name: a\nisolation: sandbox\ncommand: ./server\n", "command", "must be a list"},
		{"command empty element", "name: a\nisolation: sandbox\ncommand: [./s, '']\n", "command[1]", "is empty"},
		{"command null element", "name: a\nisolation: sandbox\ncommand: [./s, ~]\n", "command[1]", "is empty"},
		{"command NUL", "name: a\nisolation: sandbox\ncommand: [\"a\\0b\"]\n", "command[0]", "NUL"},
		{"command nested list", "name: a\nisolation: sandbox\ncommand: [[a]]\n", "command[0]", "must be a string"},

		// rootfs
		{"rootfs on wasm", wasmBase + "rootfs: image.tar\n", "rootfs", "only for sandbox functions"},
		{"rootfs absolute", sandboxBase + "rootfs: /srv/image.tar\n", "rootfs", "absolute"},
		{"rootfs dotdot", sandboxBase + "rootfs: ../image.tar\n", "rootfs", "leaves the function directory"},
		{"rootfs inner dotdot", sandboxBase + "rootfs: a/../../image.tar\n", "rootfs", "leaves the function directory"},
		{"rootfs unclean", sandboxBase + "rootfs: ./image.tar\n", "rootfs", `use "image.tar"`},
		{"rootfs backslash", sandboxBase + "rootfs: 'a\\image.tar'\n", "rootfs", "backslash"},
		{"rootfs NUL", sandboxBase + "rootfs: \"a\\0.tar\"\n", "rootfs", "not a valid file name"},
		{"rootfs not a tar", sandboxBase + "rootfs: image.zip\n", "rootfs", "not a tar archive"},
		{"rootfs suffix only", sandboxBase + "rootfs: .tar.gz\n", "rootfs", "not a tar archive"},
		{"rootfs directory", sandboxBase + "rootfs: rootfs/\n", "rootfs", "not a clean relative path"},
		{"rootfs list", sandboxBase + "rootfs: [a.tar]\n", "rootfs", "must be a string"},

		// memory
		{"memory unknown unit", wasmBase + "memory: 12Zi\n", "memory", `"12Zi" is not a size; use e.g. 128Mi`},
		{"memory fraction", wasmBase + "memory: 1.5Gi\n", "memory", "not a size"},
		{"memory space", wasmBase + "memory: 128 Mi\n", "memory", "not a size"},
		{"memory unit only", wasmBase + "memory: Mi\n", "memory", "not a size"},
		{"memory too small", wasmBase + "memory: 1023Ki\n", "memory", "out of range; use 1Mi to 16Gi"},
		{"memory too large", wasmBase + "memory: 17Gi\n", "memory", "out of range"},
		{"memory zero", wasmBase + "memory: 0\n", "memory", "out of range"},
		{"memory negative", wasmBase + "memory: -1Mi\n", "memory", "out of range"},
		{"memory overflow", wasmBase + "memory: 99999999999999999999Gi\n", "memory", "too large"},
		{"memory int overflow", wasmBase + "memory: 99999999999999999999\n", "memory", "too large"},
		{"memory list", wasmBase + "memory: [1]\n", "memory", "must be a size"},

		// timeout
		{"timeout no unit", wasmBase + "timeout: 30\n", "timeout", "no unit"},
		{"timeout garbage", wasmBase + "timeout: soon\n", "timeout", `"soon" is not a duration`},
		{"timeout too small", wasmBase + "timeout: 999us\n", "timeout", "out of range"},
		{"timeout too large", wasmBase + "timeout: 15m1s\n", "timeout", "out of range"},
		{"timeout negative", wasmBase + "timeout: -1s\n", "timeout", "out of range"},

		// concurrency and scale
		{"concurrency zero", wasmBase + "concurrency: 0\n", "concurrency", "out of range"},
		{"concurrency too large", wasmBase + "concurrency: 1001\n", "concurrency", "out of range"},
		{"concurrency string", wasmBase + "concurrency: lots\n", "concurrency", `"lots" is not a whole number`},
		{"concurrency quoted", wasmBase + "concurrency: '2'\n", "concurrency", "not a whole number"},
		{"scale min negative", wasmBase + "scale: {min: -1}\n", "scale.min", "out of range"},
		{"scale min too large", wasmBase + "scale: {min: 1001, max: 1000}\n", "scale.min", "out of range"},
		{"scale max zero", wasmBase + "scale: {max: 0}\n", "scale.max", "out of range"},
		{"scale max too large", wasmBase + "scale: {max: 1001}\n", "scale.max", "out of range"},
		{"scale min over max", wasmBase + "scale: {min: 5, max: 2}\n", "scale", "min 5 is greater than max 2"},
		{"scale not mapping", wasmBase + "scale: 3\n", "scale", "must be a mapping"},
		{"scale bad int", wasmBase + "scale: {max: x}\n", "scale.max", "not a whole number"},

		// env
		{"env bad key", wasmBase + "env: {1A: x}\n", "env", `"1A" is not a valid variable name`},
		{"env dash key", wasmBase + "env: {A-B: x}\n", "env", "not a valid variable name"},
		{"env NUL value", wasmBase + "env: {A: \"x\\0\"}\n", "env.A", "NUL"},
		{"env list value", wasmBase + "env: {A: [x]}\n", "env.A", "must be a string"},
		{"env not mapping", wasmBase + "env: [A]\n", "env", "must be a mapping"},
		{"env too many", env(MaxEnvEntries+1, 1), "env", "the limit is 128"},
		{"env too big", env(4, 9<<10), "env", "the limit is 32 KiB"},

		// allow
		{"wasm network", wasmBase + "allow: {network: true}\n", "allow.network", "wasm functions have no network"},
		{"allow not bool", wasmBase + "allow: {files: maybe}\n", "allow.files", "not true or false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", m)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not match ErrInvalid", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not a *FieldError", err, err)
			}
			if fe.Field != tt.field || !strings.Contains(fe.Problem, tt.problem) {
				t.Errorf("got field %q problem %q; want field %q problem containing %q", fe.Field, fe.Problem, tt.field, tt.problem)
			}
		})
	}
}

func TestEnvLimitsAtBoundary(t *testing.T) {
	m, err := Parse([]byte(wasmBase))
	if err != nil {
		t.Fatal(err)
	}
	m.Env = map[string]string{}
	for i := range MaxEnvEntries {
		m.Env[fmt.Sprintf("K%03d", i)] = ""
	}
	if err := m.Validate(); err != nil {
		t.Errorf("%d entries: %v", MaxEnvEntries, err)
	}
	m.Env = map[string]string{"K": strings.Repeat("v", MaxEnvSize-1)}
	if err := m.Validate(); err != nil {
		t.Errorf("exactly %d bytes: %v", MaxEnvSize, err)
	}
	m.Env["K"] += "v"
	if err := m.Validate(); err == nil {
		t.Errorf("%d bytes accepted", MaxEnvSize+1)
	}
}

func TestFieldErrorMessage(t *testing.T) {
	_, err := Parse([]byte(wasmBase + "memory: 12Zi\n"))
	if got, want := fmt.Sprint(err), `hearth.yaml: memory: "12Zi" is not a size; use e.g. 128Mi`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := (&FieldError{Problem: "is empty"}).Error(), "hearth.yaml: is empty"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBytesString(t *testing.T) {
	for _, tt := range []struct {
		b    Bytes
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {Ki, "1Ki"}, {1536 * Ki, "1536Ki"},
		{128 * Mi, "128Mi"}, {Gi, "1Gi"}, {16 * Gi, "16Gi"}, {1e9, "1000000000"}, {64e6, "62500Ki"},
		{-Mi, "-1Mi"}, {Ti, "1Ti"},
	} {
		if got := tt.b.String(); got != tt.want {
			t.Errorf("Bytes(%d).String() = %q, want %q", int64(tt.b), got, tt.want)
		}
		back, err := ParseBytes(tt.b.String())
		if err != nil || back != tt.b {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", tt.b.String(), back, err, tt.b)
		}
	}
}

func TestJSON(t *testing.T) {
	m, err := Parse([]byte(sandboxBase + "memory: 64M\ntimeout: 1m30s\nenv: {A: b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"memory":"62500Ki"`, `"timeout":"1m30s"`, `"command":["./server"]`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("JSON %s lacks %s", data, want)
		}
	}
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, m) {
		t.Errorf("round trip: got %+v, want %+v", back, *m)
	}

	var b Bytes
	if err := json.Unmarshal([]byte(`1048576`), &b); err != nil || b != Mi {
		t.Errorf("number: %v %v", b, err)
	}
	if err := json.Unmarshal([]byte(`"12Zi"`), &b); err == nil {
		t.Error("bad size accepted")
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error("bad duration accepted")
	}
	if err := json.Unmarshal([]byte(`30`), &d); err == nil {
		t.Error("unitless duration accepted")
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	m, err := Parse([]byte(sandboxBase + "memory: 1G\ntimeout: 500ms\nscale: {min: 2, max: 3}\nenv: {A: '123', B: 'x: y'}\nallow: {files: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatalf("re-parse of\n%s: %v", data, err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("round trip via\n%s\ngot %+v, want %+v", data, back, m)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		wasmBase, sandboxBase,
		sandboxBase + "protocol: lambda\nmemory: 1Gi\ntimeout: 1m\nconcurrency: 8\nscale: {min: 1, max: 5}\nenv: {A: b}\nallow: {files: true, network: true}\n",
		wasmBase + "memory: 64M\n", wasmBase + "memory: 1048576\n", wasmBase + "env: {A: &x b, B: *x}\n",
		"", "~", "- a", "a: [", wasmBase + "---\nx: 1", wasmBase + "colour: red",
		wasmBase + "retry: {attempts: 5, backoff: 250ms, max_age: 2h}\ndestinations: {on_success: audit, on_failure: 'https://h.example/x?a=1'}\n",
		wasmBase + "retry: {attempts: 0}\n", wasmBase + "destinations: {on_success: hello}\n",
		sandboxBase + "rootfs: image.tar.gz\n", sandboxBase + "rootfs: ../x.tar\n", wasmBase + "rootfs: image.tar\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T %v is not a *FieldError matching ErrInvalid", err, err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted manifest does not re-validate: %v", err)
		}
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back Manifest
		if err := json.Unmarshal(j, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", j, err)
		}
		if !reflect.DeepEqual(&back, m) {
			t.Fatalf("JSON round trip via %s: got %+v, want %+v", j, back, *m)
		}
		if err := back.Validate(); err != nil {
			t.Fatalf("JSON round trip does not validate: %v", err)
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(y)
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", y, err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("YAML round trip via\n%s\ngot %+v, want %+v", y, again, m)
		}
	})
}
