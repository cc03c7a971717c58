/* confine.c: the confinement of the workers that read untrusted bytes, after
 * the user switch (docs/design.md, "Security model"):
 *
 *   discover  network; no writes anywhere
 *   report    the same (it PUTs this host's fleet objects)
 *   fetch     network; writes only below its downloads dir
 *   unpack    its own network namespace (no interface but a down lo);
 *             writes only below its staging dir, plus making, removing and
 *             renaming directories directly in releases/
 *
 * Each of them then runs under a seccomp allow-list built from what the step
 * really calls (libc, libcurl, OpenSSL, libarchive, glibc's NSS, sd-journal),
 * error paths included; anything else kills the process (SIGSYS), which the
 * supervisor reports as the step's failure. Landlock is used where the kernel
 * has it: without it one log line says so and file permissions alone limit
 * the writes. */
#define _GNU_SOURCE
#include "worker/confine.h"

#include <fcntl.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "worker/confine-syscalls.h"

/* Newer than the kernel headers of Debian 12 (Landlock ABI 2). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#define CONFINE_NET_BIND_TCP (1ULL << 0)
#define CONFINE_NET_CONNECT_TCP (1ULL << 1)
#define CONFINE_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define CONFINE_SCOPE_SIGNAL (1ULL << 1)
#define CONFINE_RULE_PATH_BENEATH 1

/* struct landlock_ruleset_attr as of ABI 6; the kernel reads only the
 * fields its ABI has, so the size passed grows with the ABI. */
typedef struct RulesetAttr {
        uint64_t handled_access_fs;
        uint64_t handled_access_net;
        uint64_t scoped;
} RulesetAttr;

typedef struct __attribute__((packed)) PathBeneath {
        uint64_t allowed_access;
        int32_t parent_fd;
} PathBeneath;

typedef struct Policy {
        const char *step;
        unsigned groups;               /* CONFINE_SYSCALLS_* */
        bool network;                  /* talks to S3 / IMDS */
        bool writes;                   /* owns a directory (confine_allow_writes) */
} Policy;

static const Policy policies[] = {
        { "discover", CONFINE_SYSCALLS_BASE | CONFINE_SYSCALLS_NETWORK, true, false },
        { "report", CONFINE_SYSCALLS_BASE | CONFINE_SYSCALLS_NETWORK, true, false },
        { "fetch", CONFINE_SYSCALLS_BASE | CONFINE_SYSCALLS_NETWORK | CONFINE_SYSCALLS_FILES, true, true },
        { "unpack", CONFINE_SYSCALLS_BASE | CONFINE_SYSCALLS_FILES | CONFINE_SYSCALLS_TREE, false, true },
};

static int write_dir_fd = -1, write_parent_fd = -1;
static bool own_netns;

/* Everything that changes the file system; reads stay as DAC allows. */
#define FS_WRITES                                                                                      \
        (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |   \
         LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |         \
         LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |     \
         LANDLOCK_ACCESS_FS_MAKE_SYM | LANDLOCK_ACCESS_FS_REFER | LANDLOCK_ACCESS_FS_TRUNCATE)
/* What unpack needs in releases/ itself: a staging dir made, removed on
 * failure, renamed to <sha> (a rename inside one directory needs no REFER). */
#define FS_TREE_OPS (LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_REMOVE_DIR)

static const Policy *policy_lookup(const char *step) {
        for (size_t i = 0; i < ELEMENTSOF(policies); i++)
                if (streq(policies[i].step, step))
                        return &policies[i];
        return NULL;
}

void confine_allow_writes(int dir_fd, int parent_fd) {
        write_dir_fd = dir_fd;
        write_parent_fd = parent_fd;
}

/* ---- network ---------------------------------------------------------- */

int confine_enter(const char *step) {
        const Policy *p = policy_lookup(step);

        if (!p || p->network || geteuid() != 0)
                return 0;
        /* Needs CAP_SYS_ADMIN, which the shipped unit does not grant: then
         * confine_apply() makes a user+net namespace instead. */
        if (unshare(CLONE_NEWNET) == 0)
                own_netns = true;
        return 0;
}

static int write_file(const char *path, const char *text) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
        size_t n = strlen(text);

        if (fd < 0)
                return -errno;
        if (write(fd, text, n) != (ssize_t) n)
                return errno > 0 ? -errno : -EIO;
        return 0;
}

/* Unprivileged: a user namespace that maps only our own ids (so files we
 * create keep our uid), owning a network namespace with only a down lo. */
static int enter_user_netns(void) {
        char map[64];
        uid_t uid = geteuid();
        gid_t gid = getegid();
        int r;

        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0)
                return -errno;
        /* The user switch made us non-dumpable, which gives /proc/self to
         * root: dumpable only while we write our maps. */
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
                return -errno;
        snprintf(map, sizeof map, "%u %u 1\n", (unsigned) uid, (unsigned) uid);
        r = write_file("/proc/self/uid_map", map);
        if (r >= 0)
                r = write_file("/proc/self/setgroups", "deny\n");
        if (r >= 0) {
                snprintf(map, sizeof map, "%u %u 1\n", (unsigned) gid, (unsigned) gid);
                r = write_file("/proc/self/gid_map", map);
        }
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 && r >= 0)
                r = -errno;
        return r;
}

static int isolate_network(const Policy *p) {
        int r;

        if (p->network || own_netns)
                return 0;
        r = enter_user_netns();
        if (r < 0)
                return log_error_errno(r, "cannot give %s a network namespace of its own "
                                       "(the unit must allow user and net namespaces): %m", p->step);
        own_netns = true;
        return 0;
}

/* ---- Landlock ----------------------------------------------------------- */

static int landlock_abi(void) {
        long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);

        return abi < 0 ? -errno : (int) abi;
}

static int add_rule(int ruleset_fd, int dir_fd, uint64_t access) {
        PathBeneath rule = { .allowed_access = access, .parent_fd = dir_fd };

        if (dir_fd < 0 || access == 0)
                return 0;
        if (syscall(SYS_landlock_add_rule, ruleset_fd, CONFINE_RULE_PATH_BENEATH, &rule, 0) < 0)
                return -errno;
        return 0;
}

static RulesetAttr ruleset_for(const Policy *p, int abi, size_t *ret_size) {
        RulesetAttr a = { .handled_access_fs = FS_WRITES | LANDLOCK_ACCESS_FS_EXECUTE };

        if (abi < 2)
                a.handled_access_fs &= ~LANDLOCK_ACCESS_FS_REFER;
        if (abi < 3)
                a.handled_access_fs &= ~LANDLOCK_ACCESS_FS_TRUNCATE;
        if (abi >= 5)
                a.handled_access_fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
        /* No rule ever allows a bind; TCP connects only where S3 is needed. */
        if (abi >= 4)
                a.handled_access_net = CONFINE_NET_BIND_TCP | (p->network ? 0 : CONFINE_NET_CONNECT_TCP);
        if (abi >= 6)
                a.scoped = CONFINE_SCOPE_ABSTRACT_UNIX_SOCKET | CONFINE_SCOPE_SIGNAL;
        *ret_size = abi >= 6 ? sizeof a : abi >= 4 ? offsetof(RulesetAttr, scoped)
                                                   : offsetof(RulesetAttr, handled_access_net);
        return a;
}

static int landlock_restrict(const Policy *p) {
        _cleanup_close_ int ruleset_fd = -1;
        int abi = landlock_abi(), r;
        size_t size;
        RulesetAttr a;

        if (abi < 0) {
                /* Every poll runs a discover: say it once per deploy, at fetch and unpack. */
                if (p->writes)
                        log_warning("Landlock is not available (%s): %s may write wherever file permissions allow",
                                    strerror(-abi), p->step);
                return 0;
        }
        a = ruleset_for(p, abi, &size);
        ruleset_fd = (int) syscall(SYS_landlock_create_ruleset, &a, size, 0);
        if (ruleset_fd < 0)
                return log_error_errno(-errno, "landlock_create_ruleset (ABI %d): %m", abi);
        if (p->writes) {
                r = add_rule(ruleset_fd, write_dir_fd, a.handled_access_fs & FS_WRITES);
                if (r >= 0)
                        r = add_rule(ruleset_fd, write_parent_fd, a.handled_access_fs & FS_TREE_OPS);
                if (r < 0)
                        return log_error_errno(r, "landlock_add_rule: %m");
        }
        if (syscall(SYS_landlock_restrict_self, ruleset_fd, 0) < 0)
                return log_error_errno(-errno, "landlock_restrict_self: %m");
        log_debug("Landlock ABI %d: %s may write %s", abi, p->step,
                  p->writes && write_dir_fd >= 0 ? "only below its own directory" : "nowhere");
        return 0;
}

/* ---- seccomp ------------------------------------------------------------- */

static void seccomp_releasep(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

/* Arguments are filtered where a value (not a pointer) tells a harmless call
 * from a dangerous one: socket families, clone flags, ioctl requests. */
static int add_filtered(scmp_filter_ctx ctx, const Policy *p) {
        static const int net_families[] = { AF_INET, AF_INET6, AF_NETLINK };
        int r;

        /* AF_UNIX: sd-journal's socket, libcurl's wakeup socketpair. */
        r = confine_syscalls_allow_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 0, SCMP_CMP_EQ, AF_UNIX, 0);
        if (r >= 0)
                r = confine_syscalls_allow_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 0, SCMP_CMP_EQ, AF_UNIX, 0);
        if (r >= 0)
                r = confine_syscalls_add_ioctls(ctx, p->groups);
        if (r < 0 || !p->network)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(net_families) && r >= 0; i++)
                r = confine_syscalls_allow_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 0, SCMP_CMP_EQ,
                                              (scmp_datum_t) net_families[i], 0);
        /* libcurl's threaded resolver: threads yes, processes never. glibc
         * falls back from clone3 (flags behind a pointer) to clone. */
        if (r >= 0)
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
        if (r >= 0)
                r = confine_syscalls_allow_if(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 0, SCMP_CMP_MASKED_EQ,
                                              CLONE_THREAD, CLONE_THREAD);
        return r;
}

/* Debug builds only: the compromised-fetch hook (debug-hostile.c) plants a
 * symlink in downloads/, which fetch's list forbids. test_hostile uses it to
 * prove the root side of unpack on its own, so that one layer's test does not
 * lean on another layer. */
static int add_debug_allowances(scmp_filter_ctx ctx, const Policy *p) {
#ifdef DEPLOY_AGENT_DEBUG
        const char *v = getenv("DEPLOY_AGENT_DEBUG_HOSTILE_FETCH");

        if (streq(p->step, "fetch") && v && strncmp(v, "symlink:", 8) == 0)
                return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(symlinkat), 0);
#endif
        return 0;
}

static int seccomp_load_policy(const Policy *p) {
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        int r;

        ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
        if (!ctx)
                return log_error_errno(-ENOMEM, "seccomp_init: %m");
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r >= 0)
                r = confine_syscalls_add(ctx, p->groups);
        if (r >= 0)
                r = add_filtered(ctx, p);
        if (r >= 0)
                r = add_debug_allowances(ctx, p);
        if (r < 0)
                return log_error_errno(r, "seccomp allow-list for %s: %m", p->step);
        r = seccomp_load(ctx);
        if (r < 0)
                return log_error_errno(r, "seccomp_load: %m");
        return 0;
}

/* ---- debug hook ----------------------------------------------------------- */

#ifdef DEPLOY_AGENT_DEBUG
/* Debug builds only: $DEPLOY_AGENT_DEBUG_FORBIDDEN = STEP:ACTION[:ARG] makes
 * the STEP worker try ACTION once confined, so tests can see each layer stop
 * it. "connect:PORT" (TCP to 127.0.0.1) runs before Landlock and seccomp, to
 * prove the namespace on its own; "write:PATH", "exec", "socket" (AF_INET)
 * and "syscall" (one on no list) run after everything. The step then fails,
 * with the error the action got, or with "not stopped". */
static int debug_try(const char *action, const char *arg) {
        if (streq(action, "connect")) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) atoi(arg)),
                                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                        return -errno;
        } else if (streq(action, "write")) {
                _cleanup_close_ int fd = open(arg, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd < 0)
                        return -errno;
        } else if (streq(action, "exec")) {
                execl("/bin/true", "true", (char *) NULL);
                return -errno;
        } else if (streq(action, "socket")) {
                _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
        } else if (streq(action, "syscall")) {
                if (syscall(SYS_personality, 0xffffffffUL) < 0)
                        return -errno;
        } else
                return -EINVAL;
        return 0;
}

static int debug_forbidden(const char *step, bool before_landlock) {
        _cleanup_free_ char *spec = strdup(strempty(getenv("DEPLOY_AGENT_DEBUG_FORBIDDEN")));
        char *action, *arg;
        int r;

        if (!spec || !(action = strchr(spec, ':')))
                return 0;
        *action++ = '\0';
        arg = strchr(action, ':');
        if (arg)
                *arg++ = '\0';
        if (!streq(spec, step) || streq(action, "connect") != before_landlock)
                return 0;
        log_warning("debug: trying the forbidden %s%s%s", action, arg ? " " : "", strempty(arg));
        r = debug_try(action, strempty(arg));
        if (r < 0)
                return log_error_errno(r, "debug: forbidden %s stopped: %m", action);
        return log_error_errno(-ENOTRECOVERABLE, "debug: forbidden %s was NOT stopped", action);
}
#else
static int debug_forbidden(const char *step, bool before_landlock) {
        return 0;
}
#endif

int confine_apply(const char *step) {
        const Policy *p = policy_lookup(step);
        int r;

        if (!p)
                return 0;
        if ((r = isolate_network(p)) < 0 || (r = debug_forbidden(step, true)) < 0)
                return r;
        if ((r = landlock_restrict(p)) < 0 || (r = seccomp_load_policy(p)) < 0)
                return r;
        return debug_forbidden(step, false);
}
