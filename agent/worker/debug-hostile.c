/* debug-hostile.c: the compromised fetch worker of debug builds (see the
 * header). Never compiled in: outside DEPLOY_AGENT_DEBUG the bodies are empty. */
#define _GNU_SOURCE
#include "worker/debug-hostile.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#ifdef DEPLOY_AGENT_DEBUG
/* The PATH of the mode asked for, or NULL. */
static const char *hostile_path(const char *mode) {
        const char *v = getenv("DEPLOY_AGENT_DEBUG_HOSTILE_FETCH");
        size_t n = strlen(mode);

        if (!v || strncmp(v, mode, n) != 0 || v[n] != ':' || v[n + 1] != '/')
                return NULL;
        return v + n + 1;
}
#endif

void debug_hostile_fetch_result(json_t *fields) {
#ifdef DEPLOY_AGENT_DEBUG
        const char *path = hostile_path("report-path");

        if (!path || !json_is_object(fields))
                return;
        log_warning("debug: hostile fetch: reporting %s as the download", path);
        (void) json_object_set_new(fields, "path", json_string(path));
#endif
}

void debug_hostile_fetch_plant(int dir_fd, const char *name) {
#ifdef DEPLOY_AGENT_DEBUG
        const char *path = hostile_path("symlink");

        if (!path)
                return;
        log_warning("debug: hostile fetch: replacing %s with a symlink to %s", name, path);
        if (unlinkat(dir_fd, name, 0) < 0 || symlinkat(path, dir_fd, name) < 0)
                log_warning_errno(-errno, "debug: hostile fetch: %m");
#endif
}
