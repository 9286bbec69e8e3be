package async

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func checkEncode(t *testing.T, env *envelope, body []byte) {
	t.Helper()
	got := encode(env, body)
	meta, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	want := append(append(meta, '\n'), body...)
	if !bytes.Equal(got, want) {
		t.Fatalf("encode\n%q\njson.Marshal\n%q", got, want)
	}
	back, bbody, err := decode(got)
	if err != nil {
		if (env.ID == "" && !validID(env.Rand)) || (env.ID != "" && !validID(env.ID)) || env.Function == "" {
			return // decode refuses what no enqueue writes
		}
		t.Fatalf("decode: %v", err)
	}
	if !bytes.Equal(bbody, body) {
		t.Fatalf("body %q, want %q", bbody, body)
	}
	// decode reads what json.Unmarshal reads from json.Marshal's bytes.
	var viaJSON envelope
	if err := json.Unmarshal(meta, &viaJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*back, viaJSON) {
		t.Fatalf("decoded %+v, want %+v", *back, viaJSON)
	}
}

func TestEncodeMatchesMarshal(t *testing.T) {
	base := envelope{Rand: NewID(), Function: "echo", Method: "POST", Path: "/", Enqueued: 1764238778123456789}
	for _, mut := range []func(*envelope){
		func(*envelope) {},
		func(e *envelope) { e.ID, e.Rand = IDForKey("echo", "k"), "" },
		func(e *envelope) { e.Query, e.Series, e.Depth = "a=1&b=<2>", 3, 2 },
		func(e *envelope) {
			e.Header = http.Header{"Content-Type": {"text/plain"}, "X-Many": {"1", "2"}, "X-Quote": {"\"q\" \\ \n \u2028 \xff"}}
		},
		func(e *envelope) { e.Header = http.Header{} },
		func(e *envelope) { e.Path = "/a b/ü" },
	} {
		env := base
		mut(&env)
		checkEncode(t, &env, []byte("body\nwith newline"))
		checkEncode(t, &env, nil)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("echo", "POST", "/x", "q=1", "X-K", "v", int64(1), 0, 0, []byte("b"))
	f.Fuzz(func(t *testing.T, fn, method, path, query, hk, hv string, enq int64, series, depth int, body []byte) {
		env := &envelope{Rand: NewID(), Function: fn, Method: method, Path: path, Query: query,
			Header: http.Header{hk: {hv}}, Enqueued: enq, Series: series, Depth: depth}
		checkEncode(t, env, body)
	})
}
