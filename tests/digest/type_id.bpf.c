// SPDX-License-Identifier: GPL-2.0
/* A test object for kgate's minimized CO-RE BTF (tests/unit/test_core_btf.cpp): a program that
 * asks for the kernel's own type id of task_struct (bpf_core_type_id_kernel(), a type_id_target
 * relocation). A minimized BTF would answer with its own id, so kgate keeps the kernel's BTF. */
#include "kgate_bpf.h"

struct task_struct {
	int tgid;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_getpid")
int kernel_type_id(void *ctx)
{
	/* enum bpf_type_id_kind's BPF_TYPE_ID_TARGET */
	return __builtin_btf_type_id(*(struct task_struct *)0, 1) != 0;
}

char LICENSE[] SEC("license") = "GPL";
