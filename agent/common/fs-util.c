/* fs-util.c: recursive removal, mkdir -p, atomic writes, link reading. */
#define _GNU_SOURCE
#include "common/fs-util.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/util.h"

static int rm_rf_children(int fd) {
        _cleanup_(closedirp) DIR *d = fdopendir(fd);
        struct dirent *de;
        int r = 0;

        if (!d) {
                close(fd);
                return -errno;
        }
        while ((errno = 0, de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                int k = rm_rf_at(dirfd(d), de->d_name);
                if (k < 0 && r == 0)
                        r = k;
        }
        return errno > 0 ? -errno : r;
}

int rm_rf_at(int dirfd, const char *name) {
        int fd, r;

        if (unlinkat(dirfd, name, 0) >= 0 || errno == ENOENT)
                return 0;
        /* A directory: EISDIR, or EPERM/EACCES when unlink() is refused before
         * the kernel looks at the type (Landlock checks "remove file" first, and
         * the confined unpack worker may only remove directories in releases/). */
        r = -errno;
        if (r != -EISDIR && r != -EPERM && r != -EACCES)
                return r;
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : errno == ENOTDIR ? r : -errno;
        r = rm_rf_children(fd); /* takes fd */
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

DIR *opendir_at(int dirfd) {
        int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d;

        if (fd < 0)
                return NULL;
        d = fdopendir(fd);
        if (!d)
                close(fd);
        return d;
}

int rm_rf_prefixed_at(int dirfd, const char *prefix) {
        _cleanup_(closedirp) DIR *d = opendir_at(dirfd);
        size_t n = strlen(prefix);
        struct dirent *de;
        int r = 0, removed = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (strncmp(de->d_name, prefix, n) != 0)
                        continue;
                int k = rm_rf_at(dirfd, de->d_name);
                if (k < 0 && r == 0)
                        r = k;
                removed += k >= 0;
        }
        return r < 0 ? r : removed;
}

int mkdir_p(const char *path, mode_t mode) {
        char buf[PATH_MAX];

        if (strlen(path) >= sizeof buf || path[0] != '/')
                return -EINVAL;
        strcpy(buf, path);
        for (char *p = buf + 1; ; p++) {
                if (*p != '/' && *p != '\0')
                        continue;
                char c = *p;
                *p = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = c;
                if (c == '\0')
                        return 0;
        }
}

int readlink_at(int dirfd, const char *name, char **ret) {
        char buf[PATH_MAX];
        ssize_t n = readlinkat(dirfd, name, buf, sizeof buf - 1);
        char *s;

        if (n < 0)
                return -errno;
        buf[n] = '\0';
        s = strdup(buf);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t n, mode_t mode) {
        char tmp[NAME_MAX + 1];
        uint64_t rnd;
        _cleanup_close_ int fd = -1;
        int r;

        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                return -EIO;
        if ((size_t) snprintf(tmp, sizeof tmp, ".%s.tmp-%016llx", name, (unsigned long long) rnd) >= sizeof tmp)
                return -ENAMETOOLONG;
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        r = loop_write(fd, data, n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                unlinkat(dirfd, tmp, 0);
                return r;
        }
        return fsync(dirfd) < 0 ? -errno : 0;
}

int dir_exists_at(int dirfd, const char *name) {
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -errno;
        return S_ISDIR(st.st_mode) ? 1 : -ENOTDIR;
}

bool release_dir_exists(const char *releases_dir, const char *sha) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", releases_dir, sha);

        return path && dir_exists_at(AT_FDCWD, path) > 0;
}

int release_link_sha(int root_fd, const char *link_name, char **ret_sha) {
        _cleanup_free_ char *target = NULL;
        const char *base;
        char *sha;
        int r;

        r = readlink_at(root_fd, link_name, &target);
        if (r < 0)
                return r;
        assert(target); /* for the static analyzer, which cannot know that errno > 0 */
        base = strrchr(target, '/');
        base = base ? base + 1 : target;
        if (!sha_is_valid(base))
                return -EBADMSG;
        sha = strdup(base);
        if (!sha)
                return -ENOMEM;
        *ret_sha = sha;
        return 0;
}
