/* fuzz.h: what every libFuzzer target here shares: the entry points'
 * prototypes (the build has -Wmissing-prototypes), a private scratch
 * directory for targets whose code under test reads or writes files, and
 * a NUL-terminated copy of the input for parsers that take C strings. */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* One directory per fuzzing process, removed at exit: parallel jobs and
 * other sessions on the machine never see each other's files. */
static char fuzz_dir[64];

static inline void fuzz_dir_remove(void) {
        char cmd[96];

        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
        if (fuzz_dir[0] && system(cmd) != 0)
                fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir);
}

/* The scratch directory, made on first use in parent. */
static inline const char *fuzz_scratch_dir_in(const char *parent) {
        if (!fuzz_dir[0]) {
                snprintf(fuzz_dir, sizeof fuzz_dir, "%s/deploy-fuzz-XXXXXX", parent);
                if (!mkdtemp(fuzz_dir))
                        abort();
                atexit(fuzz_dir_remove);
        }
        return fuzz_dir;
}

/* In $TMPDIR (scripts/fuzz.sh points it at /dev/shm), else /tmp. */
static inline const char *fuzz_scratch_dir(void) {
        const char *tmp = getenv("TMPDIR");

        return fuzz_scratch_dir_in(tmp && *tmp ? tmp : "/tmp");
}

/* Writes data to path, replacing it; aborts on failure (the harness is broken then). */
static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
        FILE *f = fopen(path, "we");

        if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
                abort();
}

/* data as a C string, malloc'd; NULL when it holds a NUL byte (a C string
 * API cannot receive one, so such inputs say nothing about it). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s;

        if (memchr(data, '\0', size))
                return NULL;
        s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}
