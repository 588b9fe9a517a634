/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/* See types.h. Both gate arches are 64-bit. */
#ifndef KGATE_ASM_BITSPERLONG_H
#define KGATE_ASM_BITSPERLONG_H
#define __BITS_PER_LONG 64
#include <asm-generic/bitsperlong.h>
#endif
