package wasm

import (
	"bytes"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// pageLimit returns the memory limit in bytes of a spec's MemoryBytes:
// page-aligned, at most 4 GiB, and 4 GiB when unset.
func pageLimit(memoryBytes int64) uint64 {
	limit := uint64(max(memoryBytes, 0))
	if limit == 0 || limit > maxMemoryBytes {
		limit = maxMemoryBytes
	}
	return limit - limit%pageSize
}

// pageSize is the WebAssembly page size.
const pageSize = 65536

// maxMemoryBytes is the most a 32-bit WebAssembly memory can hold (4 GiB).
const maxMemoryBytes = 65536 * pageSize

// allocator backs exactly one module instance's linear memory with an mmap'd
// region reserved up to the instance's memory limit, so growing never copies
// and the driver knows for certain when the guest asked for more than its
// limit. wazero's own page limit is left at the 4 GiB maximum: this allocator
// is the one that refuses.
//
// With a snapshot (fd >= 0) the region maps the snapshot's memfd
// MAP_PRIVATE: the memory starts as the snapshot without copying, and pages
// are copied only when the guest writes them.
type allocator struct {
	limit uint64        // bytes; Reallocate beyond this fails
	fd    int           // snapshot memfd, or -1 for anonymous memory
	pool  *memPool      // recycles anonymous regions; nil: munmap on Free
	usage *atomic.Int64 // the owning instance's live linear-memory bytes
	live  *atomic.Int64 // the driver's count of mapped linear memories

	mem      *linearMemory // set by Allocate
	limitHit atomic.Bool   // the guest asked for more than limit
}

func newAllocator(limit uint64, fd int, pool *memPool, usage, live *atomic.Int64) *allocator {
	if fd >= 0 {
		pool = nil
	}
	return &allocator{limit: limit, fd: fd, pool: pool, usage: usage, live: live}
}

// Allocate implements experimental.MemoryAllocator.
func (a *allocator) Allocate(_, max uint64) experimental.LinearMemory {
	reserve := min(a.limit, max)
	if reserve < pageSize {
		reserve = pageSize
	}
	m := &linearMemory{a: a, limit: min(a.limit, max)}
	var err error
	if r := a.pool.get(reserve); r != nil {
		m.region = r
	} else if a.pool != nil {
		m.region, err = newRegion(reserve)
	} else if a.fd >= 0 {
		m.region, err = unix.Mmap(a.fd, 0, int(reserve), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	} else {
		m.region, err = unix.Mmap(-1, 0, int(reserve), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	}
	if err != nil {
		// Out of address space: fall back to the Go heap so that wazero's
		// instantiation still sees a valid buffer. Growth is still capped.
		m.region, m.heap = make([]byte, reserve), true
	}
	a.mem = m
	a.live.Add(1)
	return m
}

// linearMemory implements experimental.LinearMemory.
type linearMemory struct {
	a      *allocator
	region []byte // the whole reservation
	heap   bool   // region came from the Go heap, not mmap
	limit  uint64
	size   uint64
	dirty  uint64 // the largest size the guest could have written
	// shrinkTo, when non-zero, makes the next Reallocate return the memory
	// cut back to this many bytes (see pooled.reset).
	shrinkTo uint64
}

// Reallocate implements experimental.LinearMemory. It never moves memory.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if m.shrinkTo != 0 {
		size, m.shrinkTo = m.shrinkTo, 0
		m.a.usage.Add(int64(size) - int64(m.size))
		m.size = size
		return m.region[:size:size]
	}
	if size > m.limit || size > uint64(len(m.region)) {
		m.a.limitHit.Store(true)
		return nil
	}
	m.a.usage.Add(int64(size) - int64(m.size))
	m.size = size
	m.dirty = max(m.dirty, size)
	return m.region[:size:size]
}

// Free implements experimental.LinearMemory.
func (m *linearMemory) Free() {
	if m.region == nil {
		return
	}
	m.a.usage.Add(-int64(m.size))
	m.a.live.Add(-1)
	if !m.heap && !m.a.pool.put(m.region, m.dirty) {
		_ = unix.Munmap(m.region)
	}
	m.region, m.size = nil, 0
}

// populateBytes is how much of a new anonymous region is faulted in up
// front, in one madvise call instead of one trap per page: about what a Go
// runtime touches while it starts.
const populateBytes = 4 << 20

// newRegion maps an anonymous region of size bytes and populates its start.
func newRegion(size uint64) ([]byte, error) {
	r, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	// Best effort: older kernels lack MADV_POPULATE_WRITE; pages then
	// fault in as the guest touches them.
	_ = unix.Madvise(r[:min(size, populateBytes)], unix.MADV_POPULATE_WRITE)
	return r, nil
}

// prefill makes sure the pool holds at least one region of the given size,
// so that the first instance after a deploy or restart does not pay for
// faulting its memory in.
func (p *memPool) prefill(size uint64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	have := len(p.free[int(size)]) > 0 || p.n >= p.max
	p.mu.Unlock()
	if have {
		return
	}
	r, err := newRegion(size)
	if err != nil {
		return
	}
	if !p.put(r, 0) {
		_ = unix.Munmap(r)
	}
}

// memPool recycles the anonymous reservations of fresh (command-mode)
// instances. Unmapping a region and faulting fresh pages into the next one
// costs far more than zeroing the bytes the last guest could have touched:
// on virtual machines each page fault costs microseconds to tens of them, so
// a fresh Go runtime's few MiB cost milliseconds in faults alone.
type memPool struct {
	mu   sync.Mutex
	free map[int][][]byte // by reservation size
	n    int
	max  int
}

// newMemPool returns a pool keeping at most max idle regions.
func newMemPool(max int) *memPool {
	return &memPool{free: map[int][][]byte{}, max: max}
}

// zeroInPlace is the most a recycled region is zeroed with memclr; beyond
// it the pages are dropped with MADV_DONTNEED (they read back as zeros).
const zeroInPlace = 8 << 20

// get returns a zeroed region of the given size, or nil.
func (p *memPool) get(size uint64) []byte {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	rs := p.free[int(size)]
	if len(rs) == 0 {
		p.mu.Unlock()
		return nil
	}
	r := rs[len(rs)-1]
	p.free[int(size)] = rs[:len(rs)-1]
	p.n--
	p.mu.Unlock()
	return r
}

// put zeroes the first dirty bytes of r and keeps it, or reports false when
// the pool is full and r should be unmapped.
func (p *memPool) put(r []byte, dirty uint64) bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	full := p.n >= p.max
	if !full {
		p.n++ // reserve the slot before zeroing outside the lock
	}
	p.mu.Unlock()
	if full {
		return false
	}
	dirty = min(dirty, uint64(len(r)))
	if dirty <= zeroInPlace {
		clear(r[:dirty])
	} else {
		clear(r[:zeroInPlace])
		end := (dirty + osPageSize - 1) &^ (osPageSize - 1)
		if err := unix.Madvise(r[zeroInPlace:min(end, uint64(len(r)))], unix.MADV_DONTNEED); err != nil {
			p.mu.Lock()
			p.n--
			p.mu.Unlock()
			return false
		}
	}
	p.mu.Lock()
	p.free[len(r)] = append(p.free[len(r)], r)
	p.mu.Unlock()
	return true
}

// close unmaps every idle region.
func (p *memPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for size, rs := range p.free {
		for _, r := range rs {
			_ = unix.Munmap(r)
		}
		delete(p.free, size)
	}
	p.n = 0
}

// osPageSize is the granularity restore compares and copies at.
const osPageSize = 4096

var zeroPage [osPageSize]byte

// restore makes [0, n) of the memory equal to pristine followed by zeros, by
// comparing page by page and copying back only pages that differ. Pages stay
// mapped: writing to a page after MADV_DONTNEED costs a page fault (and a
// copy, for a file mapping), which on virtual machines costs tens of
// microseconds, while comparing a page that did not change costs a few
// hundred nanoseconds at most.
func (m *linearMemory) restore(pristine []byte, n uint64) {
	n = min(n, uint64(len(m.region)))
	mem := m.region[:n]
	for off := 0; off < len(mem); off += osPageSize {
		page := mem[off:min(off+osPageSize, len(mem))]
		var want []byte
		if off < len(pristine) {
			want = pristine[off:min(off+osPageSize, len(pristine))]
		}
		if len(want) == len(page) {
			if !bytes.Equal(page, want) {
				copy(page, want)
			}
			continue
		}
		// Past the snapshot image: zero.
		if !bytes.Equal(page, zeroPage[:len(page)]) {
			clear(page[len(want):])
			copy(page, want)
		}
	}
}

// reservation is the size of the region Allocate reserves for an instance
// of m under limit (see allocator.Allocate).
func reservation(limit uint64, m *module) uint64 {
	reserve := limit
	if m.info.memHasMax {
		reserve = min(reserve, m.info.memMax*pageSize)
	}
	return max(reserve, pageSize)
}
