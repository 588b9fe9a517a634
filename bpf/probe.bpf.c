// SPDX-License-Identifier: GPL-2.0
/* kgate's built-in gate object. CO-RE: it includes no vmlinux.h; the kernel types it
 * reads are declared below with preserve_access_index, so libbpf relocates every field
 * access against the running kernel's BTF.
 *
 * Two programs, both writing struct kgate_event to the `events` ring buffer:
 *  - on_getpid: tracepoint syscalls/sys_enter_getpid. The nonce comes from the
 *    `kgate_nonce` map, which the agent fills with the host's nonce before triggering.
 *  - on_uprobe: uprobe on the agent's own kgate_uprobe_target(nonce); the nonce is
 *    the function's first argument. */
#include "kgate_bpf.h"
#include "kgate_event.h"

struct task_struct {
	int tgid;
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long di;
} __attribute__((preserve_access_index));
#define KGATE_ARG1(regs) ((regs)->di)
#elif defined(__TARGET_ARCH_arm64)
struct user_pt_regs {
	__u64 regs[31];
} __attribute__((preserve_access_index));
#define KGATE_ARG1(regs) (((struct user_pt_regs *)(regs))->regs[0])
struct pt_regs;
#else
#error "set __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/* The fixed layout of a syscall-entry tracepoint record (its format file). The
 * program must read its context through this layout: the verifier checks the
 * access against the event's record size. */
struct syscall_enter_record {
	__u16 common_type;
	__u8 common_flags;
	__u8 common_preempt_count;
	__s32 common_pid;
	__s32 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kgate_nonce SEC(".maps");

static __always_inline int emit(const char *name, __u64 nonce, __s32 nr)
{
	struct kgate_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	e->nonce = nonce;
	e->tgid = bpf_get_current_pid_tgid() >> 32;
	e->core_tgid = KGATE_CORE_READ(task, tgid);
	e->syscall_nr = nr;
	e->reserved = 0;
	__builtin_memset(e->prog, 0, sizeof(e->prog));
	for (int i = 0; i < KGATE_PROG_NAME_LEN - 1 && name[i]; i++)
		e->prog[i] = name[i];
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(struct syscall_enter_record *ctx)
{
	__u32 key = 0;
	__u64 *nonce = bpf_map_lookup_elem(&kgate_nonce, &key);
	return emit("on_getpid", nonce ? *nonce : 0, ctx->nr);
}

SEC("uprobe//proc/self/exe:kgate_uprobe_target")
int on_uprobe(struct pt_regs *regs)
{
	return emit("on_uprobe", KGATE_ARG1(regs), -1);
}

char LICENSE[] SEC("license") = "GPL";
