/* fuzz-state.c: state.json as the supervisor loads it at start. What loads
 * is saved (the real temp-file-and-rename path) and loaded again; the
 * second load must format to the same text as the first. */
#include "supervisor/state.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ServiceState *s = NULL, *again = NULL;
        char path[128], *error = NULL, *first, *second;

        if (size > 256 * 1024)
                return -1;
        snprintf(path, sizeof path, "%s/state.json", fuzz_scratch_dir());
        fuzz_write_file(path, data, size);
        if (state_load(path, &s, &error) < 0) {
                if (s || !error)
                        abort();
                free(error);
                return 0;
        }
        first = state_format(s);
        if (!first || state_save(s, path) < 0)
                abort();
        if (state_load(path, &again, &error) < 0) {
                fprintf(stderr, "saved state does not load: %s\n--- saved:\n%s\n", error, first);
                abort();
        }
        second = state_format(again);
        if (!second || strcmp(first, second) != 0) {
                fprintf(stderr, "saved state reloads differently\n--- first:\n%s\n--- second:\n%s\n", first,
                        second);
                abort();
        }
        free(first);
        free(second);
        state_free(s);
        state_free(again);
        return 0;
}
