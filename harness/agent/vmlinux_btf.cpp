// The kernel's BTF, parsed once for the agent's life.
//
// libbpf parses /sys/kernel/btf/vmlinux (4.4 MB for Debian's 6.1) on every bpf_object__load
// that needs it (CO-RE relocations, fentry/fexit, LSM, ksyms), and again for each attach target
// it looks up; under TCG that is about 90 ms each time, and a run loads an object once, plus
// twice for every program the verifier refuses. The agent is linked with
// `--wrap=btf__load_vmlinux_btf --wrap=btf__free` (meson.build): libbpf's own calls come here,
// get one parsed copy, and its frees of that copy are ignored. The kernel's BTF cannot change
// while the kernel runs, and libbpf only reads it (module BTF is split BTF on top of it, freed
// with its object).

#include <bpf/btf.h>

#include <cerrno>

extern "C" {

btf* __real_btf__load_vmlinux_btf();
void __real_btf__free(btf* b);

namespace {
btf* kernel_btf = nullptr;
}

btf* __wrap_btf__load_vmlinux_btf() {
  if (!kernel_btf) kernel_btf = __real_btf__load_vmlinux_btf();  // NULL and errno when absent
  if (!kernel_btf) return nullptr;
  return kernel_btf;
}

void __wrap_btf__free(btf* b) {
  if (b != nullptr && b == kernel_btf) return;
  __real_btf__free(b);
}

}  // extern "C"
