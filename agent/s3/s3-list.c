/* s3-list.c: expat parsers for S3's ListObjectsV2 pages and <Error> bodies.
 * Both documents come from the network: no DOCTYPE (so no entities), bounded
 * depth, bounded text per element, and every field checked before a caller
 * sees it. */
#define _GNU_SOURCE
#include "s3/s3-list.h"

#include <expat.h>
#include <limits.h>

#include "common/util.h"

#define XML_DEPTH_MAX 16U
#define XML_TEXT_MAX 4096U             /* S3 keys are <= 1024 bytes */
#define ERROR_TEXT_MAX 256U            /* of S3's <Code> and <Message> in our messages */

typedef enum Root {
        ROOT_LIST,
        ROOT_ERROR,
} Root;

typedef enum Field {
        FIELD_NONE = -1,
        FIELD_KEY,                     /* ListBucketResult/Contents/... */
        FIELD_ETAG,
        FIELD_LAST_MODIFIED,
        FIELD_SIZE,
        FIELD_TRUNCATED,               /* ListBucketResult/... */
        FIELD_NEXT_TOKEN,
        FIELD_CODE,                    /* Error/... */
        FIELD_MESSAGE,
        _FIELD_MAX,
} Field;

static const struct {
        Root root;
        unsigned depth;
        bool in_contents;
        const char *name;
        Field field;
} field_table[] = {
        { ROOT_LIST, 3, true, "Key", FIELD_KEY },
        { ROOT_LIST, 3, true, "ETag", FIELD_ETAG },
        { ROOT_LIST, 3, true, "LastModified", FIELD_LAST_MODIFIED },
        { ROOT_LIST, 3, true, "Size", FIELD_SIZE },
        { ROOT_LIST, 2, false, "IsTruncated", FIELD_TRUNCATED },
        { ROOT_LIST, 2, false, "NextContinuationToken", FIELD_NEXT_TOKEN },
        { ROOT_ERROR, 2, false, "Code", FIELD_CODE },
        { ROOT_ERROR, 2, false, "Message", FIELD_MESSAGE },
};

typedef struct Parser {
        XML_Parser xml;
        Root root;
        unsigned depth;
        bool in_contents;
        Field field;                   /* the text element we are inside, if any */
        char text[XML_TEXT_MAX];
        size_t text_len;
        char *values[_FIELD_MAX];
        s3_object_cb cb;
        void *userdata;
        size_t n_objects;
        int r;
        char *error;
} Parser;

static void parser_done(Parser *p) {
        for (size_t i = 0; i < _FIELD_MAX; i++)
                free(p->values[i]);
        free(p->error);
        if (p->xml)
                XML_ParserFree(p->xml);
}

static void parser_fail(Parser *p, int r, const char *what) {
        if (p->r < 0)
                return;
        p->r = r;
        if (what)
                (void) error_set(&p->error, r, "bad S3 response: %s", what);
        XML_StopParser(p->xml, XML_FALSE);
}

static void clear_values(Parser *p, Field from, Field to) {
        for (int i = from; i <= (int) to; i++) {
                free(p->values[i]);
                p->values[i] = NULL;
        }
}

static Field field_lookup(const Parser *p, const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(field_table); i++)
                if (field_table[i].root == p->root && field_table[i].depth == p->depth &&
                    field_table[i].in_contents == p->in_contents && streq(field_table[i].name, name))
                        return field_table[i].field;
        return FIELD_NONE;
}

static void on_start(void *userdata, const XML_Char *name, const XML_Char **attrs) {
        Parser *p = userdata;

        if (p->r < 0)
                return;
        if (p->field != FIELD_NONE)
                return parser_fail(p, -EBADMSG, "element inside a text field");
        if (++p->depth > XML_DEPTH_MAX)
                return parser_fail(p, -EBADMSG, "XML nested too deep");
        if (p->depth == 1) {
                if (!streq(name, p->root == ROOT_LIST ? "ListBucketResult" : "Error"))
                        parser_fail(p, -EBADMSG, "unexpected document element");
                return;
        }
        if (p->root == ROOT_LIST && p->depth == 2 && streq(name, "Contents")) {
                p->in_contents = true;
                clear_values(p, FIELD_KEY, FIELD_SIZE);
                return;
        }
        p->field = field_lookup(p, name);
        p->text_len = 0;
}

static void on_text(void *userdata, const XML_Char *s, int len) {
        Parser *p = userdata;

        if (p->r < 0 || p->field == FIELD_NONE || len <= 0)
                return;
        if ((size_t) len > sizeof(p->text) - p->text_len)
                return parser_fail(p, -EBADMSG, "text element too long");
        memcpy(p->text + p->text_len, s, (size_t) len);
        p->text_len += (size_t) len;
}

static int parse_u64(const char *s, uint64_t *ret) {
        uint64_t v = 0;

        if (isempty(s))
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        *ret = v;
        return 0;
}

static void emit_object(Parser *p) {
        _cleanup_free_ char *etag = NULL;
        S3Object o = {};
        int r;

        if (!p->values[FIELD_KEY] || !p->values[FIELD_ETAG] || !p->values[FIELD_LAST_MODIFIED] ||
            !p->values[FIELD_SIZE])
                return parser_fail(p, -EBADMSG, "<Contents> without Key, ETag, LastModified or Size");
        if (parse_timestamp(p->values[FIELD_LAST_MODIFIED], &o.last_modified_usec) < 0)
                return parser_fail(p, -EBADMSG, "invalid <LastModified>");
        if (parse_u64(p->values[FIELD_SIZE], &o.size) < 0)
                return parser_fail(p, -EBADMSG, "invalid <Size>");
        etag = s3_etag_unquote(p->values[FIELD_ETAG], strlen(p->values[FIELD_ETAG]));
        if (!etag)
                return parser_fail(p, -ENOMEM, NULL);
        o.key = p->values[FIELD_KEY];
        o.etag = etag;
        r = p->cb(&o, p->userdata);
        if (r < 0)
                return parser_fail(p, r, NULL);
        p->n_objects++;
}

static void on_end(void *userdata, const XML_Char *name) {
        Parser *p = userdata;

        if (p->r < 0)
                return;
        if (p->field != FIELD_NONE) {
                free(p->values[p->field]);
                p->values[p->field] = strndup(p->text, p->text_len);
                if (!p->values[p->field])
                        return parser_fail(p, -ENOMEM, NULL);
                p->field = FIELD_NONE;
        } else if (p->in_contents && p->depth == 2) {
                p->in_contents = false;
                if (p->cb)
                        emit_object(p);
        }
        p->depth--;
}

static void on_doctype(void *userdata, const XML_Char *name, const XML_Char *sysid,
                       const XML_Char *pubid, int has_internal_subset) {
        parser_fail(userdata, -EBADMSG, "DOCTYPE in XML");
}

static int parser_run(Parser *p, Root root, const char *xml, size_t n, char **ret_error) {
        p->root = root;
        p->field = FIELD_NONE;
        if (n > INT_MAX)
                return error_set(ret_error, -EFBIG, "S3 response too large to parse");
        p->xml = XML_ParserCreate("UTF-8");
        if (!p->xml)
                return -ENOMEM;
        XML_SetUserData(p->xml, p);
        XML_SetElementHandler(p->xml, on_start, on_end);
        XML_SetCharacterDataHandler(p->xml, on_text);
        XML_SetStartDoctypeDeclHandler(p->xml, on_doctype);
        if (XML_Parse(p->xml, xml, (int) n, XML_TRUE) == XML_STATUS_OK)
                return 0;
        if (p->r < 0) {
                if (p->error && ret_error) {
                        free(*ret_error);
                        *ret_error = TAKE_PTR(p->error);
                }
                return p->r;
        }
        return error_set(ret_error, -EBADMSG, "bad S3 response: malformed XML at line %lu: %s",
                         (unsigned long) XML_GetCurrentLineNumber(p->xml),
                         XML_ErrorString(XML_GetErrorCode(p->xml)));
}

void s3_list_page_done(S3ListPage *page) {
        free(page->next_token);
        *page = (S3ListPage) {};
}

int s3_list_parse(const char *xml, size_t n, s3_object_cb cb, void *userdata,
                  S3ListPage *ret_page, char **ret_error) {
        _cleanup_(parser_done) Parser p = { .cb = cb, .userdata = userdata };
        const char *truncated;
        int r;

        r = parser_run(&p, ROOT_LIST, xml, n, ret_error);
        if (r < 0)
                return r;
        truncated = p.values[FIELD_TRUNCATED];
        if (truncated && !streq(truncated, "true") && !streq(truncated, "false"))
                return error_set(ret_error, -EBADMSG, "bad S3 response: invalid <IsTruncated>");
        *ret_page = (S3ListPage) {
                .truncated = truncated && streq(truncated, "true"),
                .next_token = TAKE_PTR(p.values[FIELD_NEXT_TOKEN]),
                .n_objects = p.n_objects,
        };
        return 0;
}

/* S3's words go into our log lines: printable ASCII only, bounded. */
static char *sanitize(const char *s) {
        size_t n;
        char *t;

        if (!s)
                return NULL;
        n = strnlen(s, ERROR_TEXT_MAX);
        t = strndup(s, n);
        if (!t)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (t[i] < 0x20 || t[i] > 0x7e)
                        t[i] = '?';
        return t;
}

int s3_error_parse(const char *xml, size_t n, char **ret_code, char **ret_message) {
        _cleanup_(parser_done) Parser p = {};
        _cleanup_free_ char *code = NULL, *message = NULL;
        int r;

        /* Best effort: a Code read before the document went bad still
         * explains the failure better than nothing. */
        r = parser_run(&p, ROOT_ERROR, xml, n, NULL);
        if (r < 0 && !p.values[FIELD_CODE])
                return r;
        code = sanitize(p.values[FIELD_CODE]);
        message = sanitize(p.values[FIELD_MESSAGE]);
        if ((p.values[FIELD_CODE] && !code) || (p.values[FIELD_MESSAGE] && !message))
                return -ENOMEM;
        *ret_code = TAKE_PTR(code);
        *ret_message = TAKE_PTR(message);
        return 0;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

char *s3_etag_unquote(const char *s, size_t n) {
        while (n > 0 && is_blank(*s)) {
                s++;
                n--;
        }
        while (n > 0 && is_blank(s[n - 1]))
                n--;
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
                s++;
                n -= 2;
        }
        return strndup(s, n);
}

int s3_content_type_is_xml(const char *content_type, char **ret_type) {
        _cleanup_free_ char *type = NULL;

        if (!content_type)
                return 1;              /* not said: let the parser judge */
        type = strndup(content_type, strcspn(content_type, "; \t"));
        if (!type)
                return -ENOMEM;
        if (strcasestr(type, "xml"))
                return 1;
        *ret_type = TAKE_PTR(type);
        return 0;
}

void s3_token_set_done(S3TokenSet *s) {
        free(s->hashes);
        *s = (S3TokenSet) {};
}

/* FNV-1a: no defence against crafted collisions is needed, as a collision
 * only ends a listing early with an error. */
static uint64_t token_hash(const char *s) {
        uint64_t h = UINT64_C(14695981039346656037);

        for (; *s; s++)
                h = (h ^ (uint8_t) *s) * UINT64_C(1099511628211);
        return h;
}

int s3_token_set_add(S3TokenSet *s, const char *token) {
        uint64_t h = token_hash(token), *p;

        for (size_t i = 0; i < s->n; i++)
                if (s->hashes[i] == h)
                        return 1;
        if (s->n == s->allocated) {
                size_t a = s->allocated ? s->allocated * 2 : 16;
                p = reallocarray(s->hashes, a, sizeof(uint64_t));
                if (!p)
                        return -ENOMEM;
                s->hashes = p;
                s->allocated = a;
        }
        s->hashes[s->n++] = h;
        return 0;
}
