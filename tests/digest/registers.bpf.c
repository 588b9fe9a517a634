// SPDX-License-Identifier: GPL-2.0
/* Test objects for kgate's arch check (tests/unit/test_bpf_inspect.cpp): uprobes that read their
 * first argument through a register struct in the ways that tell x86 from arm64, or do not. One
 * variant per object, chosen with -DKGATE_REGISTERS_<variant>:
 *  - ARM64_PT_REGS: arm64's struct pt_regs, declared as a program may (regs, sp, pc, pstate),
 *    read at pc and at sp (a field x86's pt_regs has too);
 *  - ARM64_KERNEL_PT_REGS: arm64's struct pt_regs as the kernel lays it out (vmlinux.h), pc
 *    reached through anonymous unions;
 *  - X86_FLAVOR: x86's pt_regs under a libbpf ___flavor name, read at di, and a field_exists
 *    check of arm64's pt_regs.orig_x0, which reads nothing. */
#include "kgate_bpf.h"

#if defined(KGATE_REGISTERS_ARM64_PT_REGS)
struct pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
} __attribute__((preserve_access_index));

SEC("uprobe")
int read_pc(struct pt_regs *regs)
{
	return KGATE_CORE_READ(regs, pc) == KGATE_CORE_READ(regs, sp);
}
#elif defined(KGATE_REGISTERS_ARM64_KERNEL_PT_REGS)
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
	__u64 orig_x0;
	__s32 syscallno;
} __attribute__((preserve_access_index));

SEC("uprobe")
int read_pc(struct pt_regs *regs)
{
	return KGATE_CORE_READ(regs, pc) != 0;
}
#elif defined(KGATE_REGISTERS_X86_FLAVOR)
struct pt_regs___x86 {
	unsigned long di;
} __attribute__((preserve_access_index));

struct pt_regs___arm64 {
	__u64 orig_x0;
} __attribute__((preserve_access_index));

SEC("uprobe")
int read_di(void *ctx)
{
	/* enum bpf_field_info_kind's BPF_FIELD_EXISTS */
	if (!__builtin_preserve_field_info(((struct pt_regs___arm64 *)ctx)->orig_x0, 2))
		return KGATE_CORE_READ((struct pt_regs___x86 *)ctx, di) != 0;
	return 0;
}
#else
#error "set KGATE_REGISTERS_ARM64_PT_REGS, KGATE_REGISTERS_ARM64_KERNEL_PT_REGS or KGATE_REGISTERS_X86_FLAVOR"
#endif

char LICENSE[] SEC("license") = "GPL";
