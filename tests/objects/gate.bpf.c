// A BPF object written the way a project writes its own: vmlinux.h dumped from the kernel's BTF
// (kgate fetch --btf-out, then bpftool), libbpf's headers, CO-RE reads, a const volatile nonce. The
// VM suite gates it with the specs beside it on debian-6.1, its lockdown=integrity entry and
// debian-6.1-arm64: every program type kgate attaches, test-runs or only loads, and one program
// for each way a program fails.
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

// Set by kgate before load ("nonce": {"global": "kgate_nonce"}).
const volatile __u64 kgate_nonce = 0;

// A record: the nonce, the tgid that ran the program, and the program's name at offset 16.
struct event {
  __u64 nonce;
  __u32 tgid;
  __u32 pad;
  char prog[16];
};

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 256 * 1024);
} events SEC(".maps");

// Key 0: the last nonce tp_getpid saw ("map_nonce").
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} seen SEC(".maps");

#define EMIT(NAME, NONCE)                                                   \
  do {                                                                      \
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);          \
    if (e) {                                                                \
      e->nonce = (NONCE);                                                   \
      e->tgid = bpf_get_current_pid_tgid() >> 32;                           \
      e->pad = 0;                                                           \
      __builtin_memset(e->prog, 0, sizeof(e->prog));                        \
      __builtin_memcpy(e->prog, NAME, sizeof(NAME) < 16 ? sizeof(NAME) : 15); \
      bpf_ringbuf_submit(e, 0);                                             \
    }                                                                       \
  } while (0)

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_getpid(void *ctx) {
  __u32 key = 0;
  __u64 nonce = kgate_nonce;
  bpf_map_update_elem(&seen, &key, &nonce, BPF_ANY);
  EMIT("tp_getpid", nonce);
  return 0;
}

SEC("raw_tp/sys_enter")
int raw_tp_enter(struct bpf_raw_tracepoint_args *ctx) {
  return 0;
}

SEC("kprobe/do_unlinkat")
int BPF_KPROBE(kp_unlinkat, int dfd, struct filename *name) {
  EMIT("kp_unlinkat", kgate_nonce);
  return 0;
}

SEC("kretprobe/do_unlinkat")
int BPF_KRETPROBE(krp_unlinkat, long ret) {
  EMIT("krp_unlinkat", kgate_nonce);
  return 0;
}

SEC("fentry/do_unlinkat")
int BPF_PROG(fentry_unlinkat, int dfd, struct filename *name) {
  // A CO-RE read through the kernel's own type.
  const char *path = BPF_CORE_READ(name, name);
  if (path) EMIT("fentry_unlinkat", kgate_nonce);
  return 0;
}

SEC("fexit/do_unlinkat")
int BPF_PROG(fexit_unlinkat, int dfd, struct filename *name, long ret) {
  EMIT("fexit_unlinkat", kgate_nonce);
  return 0;
}

// Attached where the spec says (its "target"): the shipped binary's target_fn, which is called
// with the nonce the trigger carries.
SEC("uprobe")
int BPF_KPROBE(up_target, __u64 nonce) {
  EMIT("up_target", nonce);
  return 0;
}

#define ETH_P_IP 0x0800
#define IPPROTO_UDP_NUM 17

// XDP_PASS for UDP to port 4242 over IPv4, XDP_DROP for anything else.
SEC("xdp")
int xdp_udp_4242(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return XDP_DROP;
  struct iphdr *ip = (void *)(eth + 1);
  if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP_NUM || ip->ihl != 5) return XDP_DROP;
  struct udphdr *udp = (void *)(ip + 1);
  if ((void *)(udp + 1) > end) return XDP_DROP;
  return udp->dest == bpf_htons(4242) ? XDP_PASS : XDP_DROP;
}

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

SEC("tc")
int tc_ipv4_only(struct __sk_buff *skb) {
  return skb->protocol == bpf_htons(ETH_P_IP) ? TC_ACT_OK : TC_ACT_SHOT;
}

// BPF LSM: loaded and verified; attaching it would change what the guest may do.
SEC("lsm/file_open")
int BPF_PROG(lsm_file_open, struct file *file) {
  return 0;
}

// Refused by the verifier: a map value used without checking the lookup found one.
SEC("tracepoint/syscalls/sys_enter_getppid")
int bad_deref(void *ctx) {
  __u32 key = 0;
  __u64 *v = bpf_map_lookup_elem(&seen, &key);
  *v += 1;
  return 0;
}

// A field no 6.1 kernel has: the CO-RE relocation cannot be satisfied.
struct task_struct___kgate_future {
  int kgate_no_such_field;
} __attribute__((preserve_access_index));

SEC("tracepoint/syscalls/sys_enter_getppid")
int core_missing(void *ctx) {
  struct task_struct___kgate_future *t = (void *)bpf_get_current_task();
  int v = BPF_CORE_READ(t, kgate_no_such_field);
  EMIT("core_missing", (__u64)v);
  return 0;
}

// Attached, but nothing in a gate run calls acct(2).
SEC("tracepoint/syscalls/sys_enter_acct")
int never_fires(void *ctx) {
  EMIT("never_fires", kgate_nonce);
  return 0;
}
