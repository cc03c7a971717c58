/* fuzz-s3-list.c: the expat parsers for what S3 sends back: a
 * ListObjectsV2 page and an <Error> body. Both run on every input. Every
 * object handed to the callback has a key, the page counts exactly the
 * objects handed over, and error texts are printable ASCII (they go into
 * log lines as they are). */
#include "s3/s3-list.h"
#include "fuzz.h"

static int count_object(const S3Object *o, void *userdata) {
        size_t *n = userdata;

        if (!o->key || !o->etag)
                abort();
        (void) strlen(o->key);
        (void) strlen(o->etag);
        (*n)++;
        /* a callback that stops the parse stops it */
        return strcmp(o->key, "stop") == 0 ? -ECANCELED : 0;
}

static void check_printable(const char *s) {
        for (; s && *s; s++)
                if (*s < 0x20 || *s > 0x7e)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        S3ListPage page = {};
        char *error = NULL, *code = NULL, *message = NULL, *etag;
        size_t n = 0;
        int r;

        r = s3_list_parse((const char *) data, size, count_object, &n, &page, &error);
        if (r >= 0 && (page.n_objects != n || error))
                abort();
        if (r < 0 && r != -ECANCELED && !error)
                abort();
        s3_list_page_done(&page);
        free(error);

        r = s3_error_parse((const char *) data, size, &code, &message);
        if (r >= 0) {
                check_printable(code);
                check_printable(message);
        }
        free(code);
        free(message);

        etag = s3_etag_unquote((const char *) data, size);
        free(etag);
        return 0;
}
