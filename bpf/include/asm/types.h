/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* kgate's BPF objects are built for two target arches on any host. The uapi headers
 * they include need <asm/...>, which Debian ships per host arch only
 * (/usr/include/<triplet>/asm); these three arch-neutral files stand in, so an arm64
 * object builds the same bytes on an amd64 machine without arm64 headers installed. */
#include <asm-generic/types.h>
