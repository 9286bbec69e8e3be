//go:build linux

#include "textflag.h"

// See clone_asm.go.

// func vfork() (pid uintptr, err syscall.Errno)
// After syscall.rawVforkSyscall: the return address leaves the stack, which
// the child (running on it while the parent waits) may overwrite.
TEXT ·vfork(SB),NOSPLIT|NOFRAME,$0-16
	MOVQ	$0x4111, DI	// CLONE_VM|CLONE_VFORK|SIGCHLD
	MOVQ	$0, SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	$56, AX	// SYS_clone
	POPQ	R12
	SYSCALL
	PUSHQ	R12
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	MOVQ	$-1, pid+0(FP)
	NEGQ	AX
	MOVQ	AX, err+8(FP)
	RET
ok:
	MOVQ	AX, pid+0(FP)
	MOVQ	$0, err+8(FP)
	RET

// func cloneWaiter(flags uintptr) (pid uintptr, err syscall.Errno)
// The child (flags|CLONE_VM) touches no memory: it sleeps in ppoll until
// it is killed.
TEXT ·cloneWaiter(SB),NOSPLIT|NOFRAME,$0-24
	MOVQ	flags+0(FP), DI
	ORQ	$0x100, DI	// CLONE_VM
	MOVQ	$0, SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	$56, AX	// SYS_clone
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok
	MOVQ	$-1, pid+8(FP)
	NEGQ	AX
	MOVQ	AX, err+16(FP)
	RET
ok:
	MOVQ	AX, pid+8(FP)
	MOVQ	$0, err+16(FP)
	RET
child:
	MOVQ	$0, DI
	MOVQ	$0, SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$271, AX	// SYS_ppoll: no descriptors, no timeout
	SYSCALL
	JMP	child
