//go:build linux

#include "textflag.h"

// See clone_asm.go.

// func vfork() (pid uintptr, err syscall.Errno)
// After syscall.rawVforkSyscall (the return address stays in LR).
TEXT ·vfork(SB),NOSPLIT,$0-16
	MOVD	$0x4111, R0	// CLONE_VM|CLONE_VFORK|SIGCHLD
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$220, R8	// SYS_clone
	SVC
	CMN	$4095, R0
	BCC	ok
	MOVD	$-1, R4
	MOVD	R4, pid+0(FP)
	NEG	R0, R0
	MOVD	R0, err+8(FP)
	RET
ok:
	MOVD	R0, pid+0(FP)
	MOVD	ZR, err+8(FP)
	RET

// func cloneWaiter(flags uintptr) (pid uintptr, err syscall.Errno)
// The child (flags|CLONE_VM) touches no memory: it sleeps in ppoll until
// it is killed.
TEXT ·cloneWaiter(SB),NOSPLIT,$0-24
	MOVD	flags+0(FP), R0
	ORR	$0x100, R0	// CLONE_VM
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$0, R5
	MOVD	$220, R8	// SYS_clone
	SVC
	CBZ	R0, child
	CMN	$4095, R0
	BCC	ok
	MOVD	$-1, R4
	MOVD	R4, pid+8(FP)
	NEG	R0, R0
	MOVD	R0, err+16(FP)
	RET
ok:
	MOVD	R0, pid+8(FP)
	MOVD	ZR, err+16(FP)
	RET
child:
	MOVD	$0, R0
	MOVD	$0, R1
	MOVD	$0, R2
	MOVD	$0, R3
	MOVD	$0, R4
	MOVD	$73, R8	// SYS_ppoll: no descriptors, no timeout
	SVC
	B	child
