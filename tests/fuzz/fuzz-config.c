/* fuzz-config.c: the deploy.ini loader, then `check-config -v`'s printer:
 * what loads must print as a file that loads back to the same config (the
 * second print equals the first). A difference aborts, printing both. */
#include "config/config.h"
#include "fuzz.h"

/* config_print() into a malloc'd string. */
static char *print_config(const Config *c) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f || config_print(c, f) < 0 || fclose(f) != 0)
                abort();
        return text;
}

static void check_round_trip(const char *path, const Config *c) {
        Config *again = NULL;
        char *first = print_config(c), *second, *error = NULL;

        /* the same path: the printed header names it */
        fuzz_write_file(path, first, strlen(first));
        if (config_load(path, &again, &error) < 0) {
                fprintf(stderr, "printed config does not load: %s\n--- printed:\n%s", error, first);
                abort();
        }
        second = print_config(again);
        if (strcmp(first, second) != 0) {
                fprintf(stderr, "printed config reloads differently\n--- first:\n%s--- second:\n%s", first, second);
                abort();
        }
        free(first);
        free(second);
        config_free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char path[128], *error = NULL;
        Config *c = NULL;
        int r;

        if (size > 64 * 1024)
                return -1;
        snprintf(path, sizeof path, "%s/deploy.ini", fuzz_scratch_dir());
        fuzz_write_file(path, data, size);
        r = config_load(path, &c, &error);
        if (r < 0 && (c || (r == -EINVAL && !error)))
                abort();
        if (r >= 0)
                check_round_trip(path, c);
        config_free(c);
        free(error);
        return 0;
}
