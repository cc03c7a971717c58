/* paths.c: the checks of the directories deploy.ini names. The agent
 * creates, renames and prunes below a root as root, so a root must be a
 * directory of its own: not a system directory, not reached through a
 * symlink (which another user could swap), and apart from every other root
 * and from the agent's state. Paths are normalized lexically first, so that
 * "/srv/./api/" and "/srv/api" are seen to be the same directory. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/stat.h>

#include "config/config-internal.h"
#include "common/util.h"

static bool has_dotdot(const char *path) {
        for (const char *p = path; *p; p += strspn(p, "/")) {
                size_t n = strcspn(p, "/");

                if (n == 2 && p[0] == '.' && p[1] == '.')
                        return true;
                p += n;
        }
        return false;
}

int config_path_normalize(char *path, char **ret_problem) {
        char *w = path;
        const char *p = path;

        if (path[0] != '/')
                return error_set(ret_problem, -EINVAL, "must be an absolute path, got \"%s\"", path);
        if (has_dotdot(path))
                return error_set(ret_problem, -EINVAL, "must not contain \"..\", got \"%s\"", path);
        while (*p) {
                size_t n;

                p += strspn(p, "/");
                n = strcspn(p, "/");
                if (n > 1 || (n == 1 && p[0] != '.')) {
                        *w++ = '/';
                        memmove(w, p, n);
                        w += n;
                }
                p += n;
        }
        if (w == path)
                return error_set(ret_problem, -EINVAL, "must not be the root directory");
        *w = '\0';
        return 0;
}

static bool path_within(const char *inner, const char *outer) {
        size_t n = strlen(outer);

        return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* "/lib", "/lib64", "/usr/libexec": a "lib*" directory at the top or in /usr. */
static bool is_lib_dir(const char *path) {
        const char *rest = strncmp(path, "/usr/", 5) == 0 ? path + 4 : path;

        return strncmp(rest, "/lib", 4) == 0 && !strchr(rest + 1, '/');
}

/* path is normalized. */
int config_path_check_system(const char *path, char **ret_problem) {
        static const char *const kernel[] = { "/proc", "/sys", "/dev" };
        static const char *const system[] = {
                "/bin", "/boot", "/etc", "/home", "/lost+found", "/media", "/mnt", "/opt", "/root", "/run",
                "/sbin", "/snap", "/srv", "/tmp", "/usr", "/usr/bin", "/usr/include", "/usr/local",
                "/usr/local/bin", "/usr/local/lib", "/usr/local/sbin", "/usr/local/share", "/usr/sbin",
                "/usr/share", "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local",
                "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp",
        };

        for (size_t i = 0; i < ELEMENTSOF(kernel); i++)
                if (path_within(path, kernel[i]))
                        return error_set(ret_problem, -EINVAL,
                                         "must not be in %s, a kernel file system, got \"%s\"", kernel[i], path);
        for (size_t i = 0; i < ELEMENTSOF(system); i++)
                if (streq(path, system[i]))
                        return error_set(ret_problem, -EINVAL,
                                         "must be a directory of its own, not the system directory \"%s\"", path);
        if (is_lib_dir(path))
                return error_set(ret_problem, -EINVAL,
                                 "must be a directory of its own, not the system directory \"%s\"", path);
        return 0;
}

/* Each leading part of path that exists must not be a symlink: the agent
 * acts as root below it, and a link (or a parent that is one) could point
 * it anywhere, now or after someone swaps it. Parts that do not exist yet
 * are checked when the agent creates them (it refuses to follow links). */
int config_path_check_symlinks(const char *path, char **ret_problem) {
        _cleanup_free_ char *prefix = strdup(path);
        char *slash = NULL;

        if (!prefix)
                return -ENOMEM;
        do {
                char target[256] = "";
                struct stat st;

                slash = strchr(slash ? slash + 1 : prefix + 1, '/');
                if (slash)
                        *slash = '\0';
                if (lstat(prefix, &st) < 0)
                        return 0;      /* not there (yet), or not ours to judge */
                if (S_ISLNK(st.st_mode)) {
                        if (readlink(prefix, target, sizeof(target) - 1) < 0)
                                target[0] = '\0';
                        return error_set(ret_problem, -EINVAL,
                                         "must not go through a symlink: \"%s\" is one (to \"%s\"), "
                                         "name the real directory", prefix, target);
                }
                if (slash)
                        *slash = '/';
        } while (slash);
        return 0;
}

static int report_root(const ConfigLines *lines, const ServiceConfig *s, unsigned line, const char *fmt, ...)
        _printf_(4, 5);
static int report_root(const ConfigLines *lines, const ServiceConfig *s, unsigned line, const char *fmt, ...) {
        _cleanup_free_ char *problem = NULL;
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vasprintf(&problem, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -ENOMEM;
        lines->report(lines->userdata, line,
                      strdup_printf("%s:%u: [service \"%s\"] root: %s", lines->path, line, s->name, problem));
        return 0;
}

static int check_root_vs_state(const Config *c, const ConfigLines *lines, size_t i) {
        const ServiceConfig *s = &c->services[i];
        const char *state = c->agent.state_dir;

        if (!state)
                return 0;
        if (streq(s->root, state))
                return report_root(lines, s, lines->roots[i], "\"%s\" is also state_dir", s->root);
        if (path_within(s->root, state))
                return report_root(lines, s, lines->roots[i], "\"%s\" is inside state_dir \"%s\"", s->root, state);
        if (path_within(state, s->root))
                return report_root(lines, s, lines->roots[i], "\"%s\" contains state_dir \"%s\"", s->root, state);
        return 0;
}

/* One root inside another would put one service's tree (or its releases/)
 * under the other's pruning and renames. */
static int check_root_vs_root(const Config *c, const ConfigLines *lines, size_t i, size_t j) {
        const ServiceConfig *s = &c->services[i], *o = &c->services[j];

        if (streq(s->root, o->root))
                return report_root(lines, s, lines->roots[i], "\"%s\" is already the root of [service \"%s\"]",
                                   s->root, o->name);
        if (path_within(s->root, o->root))
                return report_root(lines, s, lines->roots[i], "\"%s\" is inside the root of [service \"%s\"] (\"%s\")",
                                   s->root, o->name, o->root);
        if (path_within(o->root, s->root))
                return report_root(lines, s, lines->roots[i], "\"%s\" contains the root of [service \"%s\"] (\"%s\")",
                                   s->root, o->name, o->root);
        return 0;
}

int config_check_paths(const Config *c, const ConfigLines *lines) {
        int r = 0;

        for (size_t i = 0; r >= 0 && i < c->n_services; i++) {
                if (!c->services[i].root)
                        continue;
                r = check_root_vs_state(c, lines, i);
                for (size_t j = 0; r >= 0 && j < i; j++)
                        if (c->services[j].root)
                                r = check_root_vs_root(c, lines, i, j);
        }
        return r;
}
