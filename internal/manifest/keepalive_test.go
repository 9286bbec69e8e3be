package manifest

import (
	"errors"
	"strings"
	"testing"
)

func TestKeepAlivePolicy(t *testing.T) {
	base := "name: f\nisolation: wasm\nmodule: f.wasm\n"
	for _, ok := range []string{"hearth", "hybrid", "fixed-10m", "fixed-90s"} {
		m, err := Parse([]byte(base + "keepalive: " + ok + "\n"))
		if err != nil || m.KeepAlive != ok {
			t.Errorf("keepalive %q: %v", ok, err)
		}
	}
	_, err := Parse([]byte(base + "keepalive: forever\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "keepalive" || !strings.Contains(err.Error(), "fixed-10m") {
		t.Fatalf("bad policy: %v", err)
	}
}
