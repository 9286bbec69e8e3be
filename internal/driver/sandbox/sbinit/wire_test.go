package sbinit

import (
	"reflect"
	"testing"
)

func TestWireRoundTrip(t *testing.T) {
	r := Root{Mount: "root", Binds: []Bind{{"/usr", "usr"}, {"/lib", "lib"}},
		Hostname: "hearth", NoFile: 1024, Seccomp: []SockFilter{{0x20, 0, 0, 4}, {0x15, 1, 2, 0xc000003e}, {0x6, 0, 0, 0x7fff0000}}, User: User{65534, 65534, 1 << 30, 1 << 30}, Probe: true}
	var r2 Root
	if err := r2.Unmarshal(r.Marshal()); err != nil || !reflect.DeepEqual(r, r2) {
		t.Errorf("root: %v\n got %+v\nwant %+v", err, r2, r)
	}
	tk := Task{Argv: []string{"./server", ""}, Env: []string{"PORT=8080", "A=é"}, TmpBytes: 64 << 20, Port: 8080}
	var tk2 Task
	if err := tk2.Unmarshal(tk.Marshal()); err != nil || !reflect.DeepEqual(tk, tk2) {
		t.Errorf("task: %v\n got %+v\nwant %+v", err, tk2, tk)
	}
	b := tk.Marshal()
	for i := range len(b) {
		if err := new(Task).Unmarshal(b[:i]); err == nil {
			t.Errorf("truncated to %d bytes: no error", i)
		}
	}
	if err := new(Root).Unmarshal(b); err == nil {
		t.Error("a task decoded as a root")
	}
}

func FuzzTaskUnmarshal(f *testing.F) {
	f.Add((&Task{Argv: []string{"x"}, Env: []string{"A=b"}}).Marshal())
	f.Add((&Root{Mount: "/r", Seccomp: []SockFilter{{1, 2, 3, 4}}}).Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		var tk Task
		if tk.Unmarshal(b) == nil {
			var again Task
			if err := again.Unmarshal(tk.Marshal()); err != nil || !reflect.DeepEqual(tk, again) {
				t.Errorf("re-encoding %+v: %v", tk, err)
			}
		}
		new(Root).Unmarshal(b)
	})
}
