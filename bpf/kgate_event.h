/* The record every kgate gate object writes to its `events` ring buffer.
 * Shared by the BPF programs, the guest agent and nothing else: the agent
 * forwards the records to the host as JSON. */
#pragma once

/* The fixed-width types: a BPF program has them from kgate_bpf.h, since it includes no system
 * header; the agent from the uapi. */
#ifdef __bpf__
#include "kgate_bpf.h"
#else
#include <linux/types.h>
#endif

#define KGATE_PROG_NAME_LEN 16

struct kgate_event {
	__u64 nonce;      /* the host's nonce, as the program saw it */
	__u32 tgid;       /* from bpf_get_current_pid_tgid() */
	__u32 core_tgid;  /* task_struct->tgid read through a CO-RE relocation */
	__s32 syscall_nr; /* tracepoints: the syscall number from the context, else -1 */
	__u32 reserved;
	char prog[KGATE_PROG_NAME_LEN]; /* the program's name, for the host to count by */
};
