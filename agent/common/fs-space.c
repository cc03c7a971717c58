/* fs-space.c: name a path's file system and its free space for messages. */
#define _GNU_SOURCE
#include "common/fs-space.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

void fs_format_bytes(uint64_t n, char buf[static 16]) {
        static const char units[] = "KMGTPE";
        double v = (double) n / 1024.0;
        size_t u = 0;

        if (n < 1024) {
                snprintf(buf, 16, "%" PRIu64 "B", n);
                return;
        }
        while (v >= 1024.0 && u < sizeof units - 2) {
                v /= 1024.0;
                u++;
        }
        snprintf(buf, 16, "%.1f%c", v, units[u]);
}

static const char *fs_type_name(long type) {
        switch ((unsigned long) type) {
        case TMPFS_MAGIC: return "tmpfs";
        case EXT4_SUPER_MAGIC: return "ext4";
        case XFS_SUPER_MAGIC: return "xfs";
        case BTRFS_SUPER_MAGIC: return "btrfs";
        case OVERLAYFS_SUPER_MAGIC: return "overlayfs";
        case NFS_SUPER_MAGIC: return "nfs";
        case SQUASHFS_MAGIC: return "squashfs";
        default: return NULL;
        }
}

/* Same mount: the mount id when the kernel reports one (a bind mount of a
 * directory of the same file system has the same st_dev), else st_dev. */
static int mount_key(const char *path, uint64_t *ret) {
        struct statx stx = {};

        if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0)
                return -errno;
        /* 0 is no mount's id: qemu-user reports the mask bit without the id */
        *ret = (stx.stx_mask & STATX_MNT_ID) && stx.stx_mnt_id != 0
                       ? stx.stx_mnt_id
                       : ((uint64_t) stx.stx_dev_major << 32 | stx.stx_dev_minor);
        return 0;
}

/* 0 and the mount point in buf, or -errno when path cannot be looked at (a
 * worker without search permission on a parent). */
static int mount_point(const char *path, char *buf, size_t size) {
        char cur[PATH_MAX];
        uint64_t key = 0, up_key = 0;
        int r;

        if (path[0] != '/' || strlen(path) >= sizeof cur)
                return -EINVAL;
        if ((r = mount_key(path, &key)) < 0)
                return r;
        strcpy(cur, path);
        for (;;) {
                char *slash = strrchr(cur, '/');

                if (!slash || slash == cur) {
                        /* the parent is "/" */
                        if (strcmp(cur, "/") != 0 && mount_key("/", &up_key) >= 0 && up_key == key)
                                strcpy(cur, "/");
                        break;
                }
                *slash = '\0';
                if (mount_key(cur, &up_key) < 0 || up_key != key) {
                        *slash = '/';
                        break;
                }
        }
        snprintf(buf, size, "%s", cur);
        return 0;
}

void fs_mount_point(const char *path, char *buf, size_t size) {
        if (mount_point(path, buf, size) < 0)
                snprintf(buf, size, "%s", path);
}

int fs_space_free(const char *path, uint64_t *ret) {
        struct statvfs sv;

        if (statvfs(path, &sv) < 0)
                return -errno;
        *ret = (uint64_t) sv.f_bavail * sv.f_frsize;
        return 0;
}

static void describe(const struct statfs *sf, const char *path, uint64_t need,
                     char buf[static FS_SPACE_TEXT_MAX]) {
        char mnt[PATH_MAX], type_buf[32], avail[16], total[16], needs[16];
        uint64_t unit = (uint64_t) (sf->f_frsize ?: sf->f_bsize); /* old kernels leave f_frsize 0 */
        const char *type = fs_type_name(sf->f_type);
        bool found = mount_point(path, mnt, sizeof mnt) >= 0;

        if (!type) {
                snprintf(type_buf, sizeof type_buf, "file system 0x%lx", (unsigned long) sf->f_type);
                type = type_buf;
        }
        fs_format_bytes((uint64_t) sf->f_bavail * unit, avail);
        fs_format_bytes((uint64_t) sf->f_blocks * unit, total);
        fs_format_bytes(need, needs);
        /* a worker may not see the mount point's parents: then name the path */
        snprintf(buf, FS_SPACE_TEXT_MAX, "%s %s %s: %s free of %s%s%s%s", type, found ? "at" : "holding",
                 found ? mnt : path, avail, total, (sf->f_flags & ST_RDONLY) ? ", read-only" : "",
                 need > 0 ? "; needs " : "", need > 0 ? needs : "");
}

void fs_space_describe(const char *path, uint64_t need, char buf[static FS_SPACE_TEXT_MAX]) {
        struct statfs sf;

        if (statfs(path, &sf) < 0) {
                snprintf(buf, FS_SPACE_TEXT_MAX, "cannot statfs %s: %s", path, strerror(errno));
                return;
        }
        describe(&sf, path, need, buf);
}

void fs_space_describe_fd(int fd, const char *path, uint64_t need, char buf[static FS_SPACE_TEXT_MAX]) {
        struct statfs sf;

        if (fstatfs(fd, &sf) < 0) {
                snprintf(buf, FS_SPACE_TEXT_MAX, "cannot statfs %s: %s", path, strerror(errno));
                return;
        }
        describe(&sf, path, need, buf);
}
