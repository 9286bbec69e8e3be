package wasm

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/tetratelabs/wazero"
)

// Hand-assembled test modules.
var (
	// (module (global (mut i32) (i32.const 7)) (global i64 (i64.const 9)))
	twoGlobals = []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		6, 11, 2, 0x7f, 1, 0x41, 7, 0x0b, 0x7e, 0, 0x42, 9, 0x0b}
	// (module (import "m" "g" (global i32)) (memory 1 2)
	//   (global (mut i32) (i32.const 1)) (export "mem" (memory 0)) (start? none)
	//   (data (i32.const 0) "x"))
	withImportAndExports = []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		2, 8, 1, 1, 'm', 1, 'g', 3, 0x7f, 0, // import m.g global i32 const
		5, 4, 1, 1, 1, 2, // memory min 1 max 2
		6, 6, 1, 0x7f, 1, 0x41, 1, 0x0b, // global mut i32 = 1
		7, 7, 1, 3, 'm', 'e', 'm', 2, 0, // export "mem" memory 0
		11, 7, 1, 0, 0x41, 0, 0x0b, 1, 'x'} // data
)

func TestParseModule(t *testing.T) {
	info, err := parseModule(withImportAndExports)
	if err != nil {
		t.Fatal(err)
	}
	if info.importedGlobals != 1 || info.globals != 1 || !info.hasMemory || info.memMin != 1 || info.memMax != 2 || !info.memHasMax || !info.exportNames["mem"] {
		t.Errorf("parsed %+v", info)
	}
}

func TestExportGlobals(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for name, bin := range map[string][]byte{"no export section": twoGlobals, "existing exports": withImportAndExports} {
		t.Run(name, func(t *testing.T) {
			info, err := parseModule(bin)
			if err != nil {
				t.Fatal(err)
			}
			out, err := exportGlobals(bin, info)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseModule(out); err != nil {
				t.Fatalf("rewritten module does not parse: %v", err)
			}
			compiled, err := r.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("wazero rejects the rewritten module: %v", err)
			}
			if name == "existing exports" {
				return // imports a global, which a host module cannot provide
			}
			mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []uint64{7, 9} {
				g := mod.ExportedGlobal(globalExportPrefix + strconv.Itoa(i))
				if g == nil || g.Get() != want {
					t.Errorf("global %d: %v, want %d", i, g, want)
				}
			}
		})
	}
}

// The rewriter keeps real Go reactors valid (the full path is covered by the
// snapshot tests; this checks the export section of a large module).
func TestExportGlobalsGoReactor(t *testing.T) {
	bin, err := os.ReadFile(guests.guestReactor)
	if err != nil {
		t.Fatal(err)
	}
	info, err := parseModule(bin)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exportGlobals(bin, info)
	if err != nil {
		t.Fatal(err)
	}
	info2, err := parseModule(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(info2.exportNames) != len(info.exportNames)+info.globals || info.globals == 0 {
		t.Errorf("exports %d -> %d with %d globals", len(info.exportNames), len(info2.exportNames), info.globals)
	}
}

func FuzzExportGlobals(f *testing.F) {
	f.Add(twoGlobals)
	f.Add(withImportAndExports)
	f.Add([]byte{0, 'a', 's', 'm', 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, bin []byte) {
		info, err := parseModule(bin)
		if err != nil {
			return
		}
		out, err := exportGlobals(bin, info)
		if err != nil {
			return
		}
		info2, err := parseModule(out)
		if err != nil {
			t.Fatalf("rewritten module does not parse: %v", err)
		}
		if info2.globals != info.globals || info2.importedGlobals != info.importedGlobals {
			t.Fatalf("globals changed: %d/%d -> %d/%d", info.globals, info.importedGlobals, info2.globals, info2.importedGlobals)
		}
		for i := range info.globals {
			if !info2.exportNames[globalExportPrefix+strconv.Itoa(i)] {
				t.Fatalf("global %d not exported", i)
			}
		}
		if _, err := exportGlobals(out, info2); err == nil && info.globals > 0 {
			t.Fatal("rewriting twice should report the name clash")
		}
	})
}
