/* SPDX-License-Identifier: GPL-2.0 */
/* Everything kgate's gate programs take from outside their own sources: fixed-width types, the
 * map types and helpers they use, the map-definition macros libbpf's loader understands, and a
 * one-level CO-RE read. The objects are built with -nostdinc and include nothing else, so
 * their bytes (the DWARF names each declaration's file and line) depend only on this tree and
 * clang, never on the host's libbpf or uapi headers. Add a helper here when a program needs it,
 * with its id from the kernel's enum bpf_func_id (include/uapi/linux/bpf.h). */
#ifndef KGATE_BPF_H
#define KGATE_BPF_H

#ifndef __bpf__
#error "kgate_bpf.h is for BPF programs (clang -target bpf)"
#endif

/* The uapi's fixed-width types; both gate arches are LP64, and their kernels use long long
 * for the 64-bit ones. */
typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

/* enum bpf_map_type: only the values the programs use. */
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_RINGBUF 27

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* An ELF section for a program, a map or the license. */
#define SEC(name) __attribute__((section(name), used))

/* BTF-defined maps: libbpf reads a map's attributes from the BTF of its struct's members, an
 * integer as the element count of an array that a member points to, a type as the type a
 * member points to. */
#define __uint(name, value) int (*name)[value]
#define __type(name, type) typeof(type) *name

/* BPF helpers are called by id: the verifier replaces the call to the constant address with
 * the helper. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_write_user)(void *dst, const void *src, __u32 len) = (void *)36;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;

/* ptr->field of a kernel object, read with bpf_probe_read_kernel at the offset that libbpf
 * relocates against the running kernel's BTF: the access is recorded as a CO-RE relocation
 * (field_byte_offset) of ptr's type. One level only. Where the read faults, the kernel zeroes
 * the value. */
#define KGATE_CORE_READ(ptr, field)                                                          \
	({                                                                                   \
		typeof((ptr)->field) kgate_core_value_;                                      \
		bpf_probe_read_kernel(&kgate_core_value_, sizeof(kgate_core_value_),         \
				      (const void *)__builtin_preserve_access_index(&(ptr)->field)); \
		kgate_core_value_;                                                           \
	})

#endif /* KGATE_BPF_H */
