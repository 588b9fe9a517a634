// The BTF a kernel carries, as /sys/kernel/btf/vmlinux serves it, read from its boot file on the
// host: what `bpftool btf dump file ... format c` turns into the vmlinux.h that CO-RE objects
// include, and what `kgate run --btf` gives a kernel of the same build that lacks its own.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace kgate::kernel {

// The .BTF section of a vmlinux ELF; in a raw image (an arm64 Image, whose sections are not
// named), the blob that starts with a BTF header whose lengths fit the file. Class usage when
// there is none, naming what was looked for.
Result<std::string> kernel_btf(std::string_view boot);

}  // namespace kgate::kernel
