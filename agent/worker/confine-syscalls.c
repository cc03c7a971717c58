/* confine-syscalls.c: the seccomp allow-lists, by group. Each list was built
 * from strace of the steps in the integration tests, success and error
 * paths both (cuts and retries, full and read-only disks, hostile archives,
 * DNS failures), and from reading what the libraries call where tests cannot
 * reach: a name missing here kills the worker with SIGSYS. Legacy names
 * (mkdir, unlink, ...) are what libarchive calls on x86_64; architectures
 * without them skip them. */
#define _GNU_SOURCE
#include "worker/confine-syscalls.h"

#include <errno.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <termios.h>

#include "common/util.h"

static const char *const base_syscalls[] = {
        /* memory and threads of the process itself */
        "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "set_robust_list", "rseq",
        "sched_yield", "sched_getaffinity", "getrandom",
        /* identity and time */
        "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
        "getresgid", "getgroups", "clock_gettime", "clock_getres", "gettimeofday", "time",
        "nanosleep", "clock_nanosleep", "uname", "sysinfo", "getrusage", "prlimit64", "getrlimit",
        /* signals: handlers, masks, abort() */
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "tgkill", "restart_syscall",
        /* reading files: CA bundle, NSS and locale files, the archive */
        "read", "readv", "pread64", "preadv", "open", "openat", "close", "fstat", "stat", "lstat",
        "newfstatat", "statx", "lseek", "fcntl", "dup", "dup2", "dup3", "getdents64", "readlink",
        "readlinkat", "access", "faccessat", "faccessat2", "fstatfs", "statfs", "fadvise64",
        "getcwd", "umask",
        /* stderr, the result on fd 3, sd-journal's socket (big entries go in a memfd) */
        "write", "writev", "pwrite64", "sendto", "sendmsg", "recvfrom", "recvmsg", "getsockopt",
        "setsockopt", "memfd_create",
        "exit", "exit_group",
        NULL
};

static const char *const network_syscalls[] = {
        "connect", "getsockname", "getpeername", "shutdown", "bind", "sendmmsg", "recvmmsg",
        "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
        "epoll_pwait", "pipe2", "eventfd2",
        NULL
};

static const char *const files_syscalls[] = {
        "ftruncate", "fsync", "fdatasync", "syncfs", "fallocate", "rename", "renameat", "renameat2",
        "unlink", "unlinkat", "rmdir",
        NULL
};

static const char *const tree_syscalls[] = {
        "mkdir", "mkdirat", "symlink", "symlinkat", "link", "linkat", "chmod", "fchmod", "fchmodat",
        "utimensat", "utimes", "futimesat", "fchdir", "chdir",
        NULL
};

static int add_names(scmp_filter_ctx ctx, const char *const *names) {
        for (; *names; names++) {
                int nr = seccomp_syscall_resolve_name(*names), r;

                if (nr == __NR_SCMP_ERROR)
                        continue;
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

int confine_syscalls_add(scmp_filter_ctx ctx, unsigned groups) {
        static const struct { unsigned group; const char *const *names; } table[] = {
                { CONFINE_SYSCALLS_BASE, base_syscalls },
                { CONFINE_SYSCALLS_NETWORK, network_syscalls },
                { CONFINE_SYSCALLS_FILES, files_syscalls },
                { CONFINE_SYSCALLS_TREE, tree_syscalls },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = (groups & table[i].group) ? add_names(ctx, table[i].names) : 0;
                if (r < 0)
                        return r;
        }
        return 0;
}

int confine_syscalls_allow_if(scmp_filter_ctx ctx, uint32_t action, int syscall, unsigned arg,
                              enum scmp_compare op, scmp_datum_t a, scmp_datum_t b) {
        struct scmp_arg_cmp cmp = { .arg = arg, .op = op, .datum_a = a, .datum_b = b };

        return seccomp_rule_add_array(ctx, action, syscall, 1, &cmp);
}

static int allow_ioctl(scmp_filter_ctx ctx, unsigned long request) {
        return confine_syscalls_allow_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_CMP_EQ,
                                         (scmp_datum_t) request, 0);
}

int confine_syscalls_add_ioctls(scmp_filter_ctx ctx, unsigned groups) {
        int r;

        /* isatty() of stdio */
        r = allow_ioctl(ctx, TCGETS);
        /* the resolver asks how much a UDP answer holds */
        if (r >= 0 && (groups & CONFINE_SYSCALLS_NETWORK))
                r = allow_ioctl(ctx, FIONREAD);
        /* libarchive reads a file's flags; setting them stays forbidden */
        if (r >= 0 && (groups & CONFINE_SYSCALLS_TREE))
                r = allow_ioctl(ctx, FS_IOC_GETFLAGS);
        return r;
}
