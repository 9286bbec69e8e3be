package events

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hearthdev/hearth/internal/manifest"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		header  http.Header
		body    string
		nilEv   bool
		problem string // substring of a malformed error
	}{
		{"plain data", http.Header{"Content-Type": {"application/json"}}, `{"a":1}`, true, ""},
		{"structured", http.Header{"Content-Type": {ContentTypeStructured}}, `{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`, false, ""},
		{"binary", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}, "Content-Type": {"text/plain"}}, "hi", false, ""},
		{"structured bad json", http.Header{"Content-Type": {ContentTypeStructured}}, `{`, false, "not a JSON object"},
		{"structured no specversion", http.Header{"Content-Type": {ContentTypeStructured}}, `{"id":"1"}`, false, "specversion is required"},
		{"structured no source", http.Header{"Content-Type": {ContentTypeStructured}}, `{"specversion":"1.0","id":"1","type":"t"}`, false, "source"},
		{"binary no type", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}}, "", false, "type"},
		{"binary bad version", http.Header{"Ce-Specversion": {"9.9"}}, "", false, "not supported"},
		{"ce headers without version", http.Header{"Ce-Id": {"1"}}, "", false, "ce-specversion"},
		{"batch", http.Header{"Content-Type": {ContentTypeBatch}}, `[]`, false, "batched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Parse(tt.header, []byte(tt.body))
			if tt.problem != "" {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error %v, want malformed with %q", err, tt.problem)
				}
				return
			}
			if err != nil || (e == nil) != tt.nilEv {
				t.Fatalf("event %v error %v", e, err)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	e := New("/src", "thing.happened")
	SetData(&e, "application/octet-stream", []byte{0, 1, 2, 0xff})
	h, body, err := Encode(&e, manifest.ProtocolHTTP)
	if err != nil || h.Get("Ce-Id") != e.ID() || h.Get("Content-Type") != "application/octet-stream" || string(body) != "\x00\x01\x02\xff" {
		t.Fatalf("binary: %v %q %v", h, body, err)
	}
	h, body, err = Encode(&e, manifest.ProtocolWagi)
	if err != nil || h.Get("Content-Type") != ContentTypeStructured || !strings.Contains(string(body), `"data_base64":"AAEC/w=="`) {
		t.Fatalf("structured: %v %s %v", h, body, err)
	}
	back, err := Unmarshal(body)
	if err != nil || string(back.Data()) != "\x00\x01\x02\xff" {
		t.Fatalf("round trip: %v %v", back, err)
	}
	// Invalid JSON declared as JSON is carried base64-encoded, not broken.
	SetData(&e, "application/json", []byte("{not json"))
	if _, body, _ := Encode(&e, manifest.ProtocolWagi); !strings.Contains(string(body), "data_base64") {
		t.Errorf("invalid JSON data: %s", body)
	}
}

func TestFromHTTP(t *testing.T) {
	e, err := FromHTTP(http.Header{"Content-Type": {"text/plain"}}, []byte("hi"), "/src", "a.b")
	if err != nil || e.Source() != "/src" || e.Type() != "a.b" || e.ID() == "" || string(e.Data()) != "hi" || e.DataContentType() != "text/plain" {
		t.Errorf("plain data: %v %v", e, err)
	}
	e, err = FromHTTP(http.Header{"Content-Type": {ContentTypeStructured}}, []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t"}`), "/src", "a.b")
	if err != nil || e.Source() != "/s" || e.Type() != "t" || e.ID() != "1" {
		t.Errorf("structured: %v %v", e, err)
	}
	if _, err := FromHTTP(http.Header{"Ce-Id": {"1"}}, nil, "/src", "a.b"); !errors.Is(err, ErrMalformed) {
		t.Errorf("malformed: %v", err)
	}
}
