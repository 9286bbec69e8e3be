package wasm

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// This file holds the small WebAssembly binary reader and rewriter the driver
// needs before handing a module to wazero: validating the header, reading the
// memory limits a module declares, and exporting every global so a reactor's
// post-initialisation state can be snapshotted and restored.

var wasmMagic = []byte{0x00, 'a', 's', 'm'}

// Section ids (WebAssembly core spec 5.5.2, plus tag from exception handling).
const (
	secCustom    = 0
	secImport    = 2
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secTag       = 13
	secDataCount = 12
)

// sectionOrder is the position each known section must take in a module.
var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, secTag: 6, 6: 7, 7: 8, 8: 9, 9: 10, secDataCount: 11, 10: 12, 11: 13}

// globalExportPrefix names the exports the rewriter adds: global i of the
// module's own globals (not counting imported ones) is exported as
// globalExportPrefix+"<i>".
const globalExportPrefix = "__hearth_global_"

type section struct {
	id      byte
	start   int // offset of the id byte
	payload []byte
}

// moduleInfo is what the driver learns from a module's binary.
type moduleInfo struct {
	sections        []section
	importedGlobals int
	globals         int // defined (not imported) globals
	hasMemory       bool
	memMin, memMax  uint64 // pages; memMax 0 with hasMax false means none
	memHasMax       bool
	importedMemory  bool
	exportNames     map[string]bool
}

// parseModule reads the section structure of a WebAssembly binary module.
// It checks no more than it needs; wazero validates the rest.
func parseModule(b []byte) (*moduleInfo, error) {
	if len(b) < 8 || !bytes.Equal(b[:4], wasmMagic) {
		return nil, errors.New("not a WebAssembly module (bad magic number)")
	}
	if b[4] != 1 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		return nil, errors.New("unsupported WebAssembly binary version (want 1)")
	}
	info := &moduleInfo{exportNames: map[string]bool{}}
	r := &reader{b: b, off: 8}
	last := 0
	for r.off < len(b) {
		start := r.off
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		payload, err := r.bytes(int(n))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if id != secCustom {
			order, known := sectionOrder[id]
			if !known {
				return nil, fmt.Errorf("unknown section id %d", id)
			}
			if order <= last {
				return nil, fmt.Errorf("section %d out of order", id)
			}
			last = order
		}
		info.sections = append(info.sections, section{id: id, start: start, payload: payload})
		if err := info.readSection(id, payload); err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
	}
	return info, nil
}

func (info *moduleInfo) readSection(id byte, payload []byte) error {
	r := &reader{b: payload}
	switch id {
	case secImport:
		n, err := r.u32()
		if err != nil {
			return err
		}
		for range n {
			if _, err := r.name(); err != nil {
				return err
			}
			if _, err := r.name(); err != nil {
				return err
			}
			kind, err := r.byte()
			if err != nil {
				return err
			}
			switch kind {
			case 0x00: // func: type index
				_, err = r.u32()
			case 0x01: // table: reftype, limits
				if _, err = r.byte(); err == nil {
					_, _, _, err = r.limits()
				}
			case 0x02: // memory: limits
				info.importedMemory = true
				_, _, _, err = r.limits()
			case 0x03: // global: valtype, mutability
				info.importedGlobals++
				if _, err = r.byte(); err == nil {
					_, err = r.byte()
				}
			case 0x04: // tag: attribute, type index
				if _, err = r.byte(); err == nil {
					_, err = r.u32()
				}
			default:
				return fmt.Errorf("unknown import kind %#x", kind)
			}
			if err != nil {
				return err
			}
		}
	case secMemory:
		n, err := r.u32()
		if err != nil {
			return err
		}
		if n > 0 {
			min, max, hasMax, err := r.limits()
			if err != nil {
				return err
			}
			info.hasMemory, info.memMin, info.memMax, info.memHasMax = true, min, max, hasMax
		}
	case secGlobal:
		n, err := r.u32()
		if err != nil {
			return err
		}
		// Entries are not parsed (wazero validates them), but each takes at
		// least three bytes: type, mutability, end of the init expression.
		if uint64(n)*3 > uint64(len(payload)-r.off) {
			return fmt.Errorf("global count %d exceeds the section size", n)
		}
		info.globals = int(n)
		return nil
	case secExport:
		n, err := r.u32()
		if err != nil {
			return err
		}
		for range n {
			name, err := r.name()
			if err != nil {
				return err
			}
			if _, err := r.byte(); err != nil {
				return err
			}
			if _, err := r.u32(); err != nil {
				return err
			}
			info.exportNames[name] = true
		}
	default:
		return nil
	}
	if r.off != len(r.b) {
		return errors.New("section size mismatch")
	}
	return nil
}

// exportGlobals returns a copy of the module in which every global the
// module defines is also exported as globalExportPrefix+"<i>". The export
// section is extended, or created in its proper place when absent.
func exportGlobals(b []byte, info *moduleInfo) ([]byte, error) {
	var added []byte
	for i := range info.globals {
		name := globalExportPrefix + strconv.Itoa(i)
		if info.exportNames[name] {
			return nil, fmt.Errorf("module already exports %q", name)
		}
		added = appendName(added, name)
		added = append(added, 0x03) // global
		added = appendU32(added, uint32(info.importedGlobals+i))
	}
	out := make([]byte, 0, len(b)+len(added)+16)
	out = append(out, b[:8]...)
	done := false
	emit := func(count uint32, entries []byte) {
		var payload []byte
		payload = appendU32(payload, count)
		payload = append(payload, entries...)
		out = append(out, secExport)
		out = appendU32(out, uint32(len(payload)))
		out = append(out, payload...)
		done = true
	}
	for _, s := range info.sections {
		if !done && s.id != secCustom && sectionOrder[s.id] > sectionOrder[secExport] {
			emit(uint32(info.globals), added)
		}
		if s.id == secExport {
			r := &reader{b: s.payload}
			n, err := r.u32()
			if err != nil {
				return nil, err
			}
			emit(n+uint32(info.globals), append(append([]byte(nil), s.payload[r.off:]...), added...))
			continue
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.payload)))
		out = append(out, s.payload...)
	}
	if !done {
		emit(uint32(info.globals), added)
	}
	return out, nil
}

type reader struct {
	b   []byte
	off int
}

var errShort = errors.New("unexpected end of module")

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errShort
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

// uleb reads an unsigned LEB128 number of at most bits bits.
func (r *reader) uleb(bits uint) (uint64, error) {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= bits+7 {
			return 0, errors.New("LEB128 number too long")
		}
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if bits < 64 && v>>bits != 0 {
				return 0, errors.New("LEB128 number overflows")
			}
			return v, nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	p, err := r.bytes(int(n))
	return string(p), err
}

// limits reads table or memory limits, including the threads (shared) and
// memory64 flag variants.
func (r *reader) limits() (min, max uint64, hasMax bool, err error) {
	flags, err := r.byte()
	if err != nil {
		return 0, 0, false, err
	}
	if flags > 0x07 {
		return 0, 0, false, fmt.Errorf("bad limits flags %#x", flags)
	}
	bits := uint(32)
	if flags&0x04 != 0 {
		bits = 64
	}
	if min, err = r.uleb(bits); err != nil {
		return 0, 0, false, err
	}
	if flags&0x01 != 0 {
		hasMax = true
		if max, err = r.uleb(bits); err != nil {
			return 0, 0, false, err
		}
	}
	return min, max, hasMax, nil
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendName(b []byte, s string) []byte {
	b = appendU32(b, uint32(len(s)))
	return append(b, s...)
}
