/* confine-syscalls.h: the seccomp allow-lists of the confined workers, as
 * groups that confine.c combines per step. */
#pragma once

#include <seccomp.h>

enum {
        CONFINE_SYSCALLS_BASE = 1U << 0,    /* every confined step: memory, files read, the result */
        CONFINE_SYSCALLS_NETWORK = 1U << 1, /* S3 and IMDS over libcurl, DNS through glibc */
        CONFINE_SYSCALLS_FILES = 1U << 2,   /* write, sync, rename and remove files */
        CONFINE_SYSCALLS_TREE = 1U << 3,    /* make a tree: directories, symlinks, modes, times */
};

/* Allow syscall when its argument number arg compares to a (and b, for
 * SCMP_CMP_MASKED_EQ: mask a, value b). libseccomp's SCMP_A0() macros leave
 * datum_b implicit, which clang's -Wmissing-field-initializers refuses. */
int confine_syscalls_allow_if(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned arg,
                              enum scmp_compare op, scmp_datum_t a, scmp_datum_t b);

/* Allow every syscall of the groups (names this architecture lacks are
 * skipped). -errno as libseccomp returns it. */
int confine_syscalls_add(scmp_filter_ctx ctx, unsigned groups);

/* Allow the ioctl requests the groups need, and no other. */
int confine_syscalls_add_ioctls(scmp_filter_ctx ctx, unsigned groups);
