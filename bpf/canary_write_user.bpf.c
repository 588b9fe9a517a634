// SPDX-License-Identifier: GPL-2.0
/* The lockdown canary. It calls bpf_probe_write_user, which the kernel refuses to
 * give a program while lockdown is at integrity or above: the verifier then
 * reports "unknown func bpf_probe_write_user#36" and the kernel logs a
 * "Lockdown: ... use of bpf to write user RAM is restricted" line. With no
 * lockdown it loads. kgate only loads it, never attaches it. */
#include "kgate_bpf.h"

SEC("tracepoint/syscalls/sys_enter_getppid")
int canary_write_user(void *ctx)
{
	__u64 value = 0;
	bpf_probe_write_user((void *)0, &value, sizeof(value));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
