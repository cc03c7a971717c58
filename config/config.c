/* config.c: loads deploy.ini with inih into a validated Config and prints it
 * back. Every error names file, line, section and key.
 *
 * inih is fed through our own line reader: Debian's libinih has no line
 * numbers in the handler, treats indented lines as continuations, and only
 * knows ';' inline comments. The reader counts lines, strips leading
 * whitespace and comments (';' or '#' at the start, or after whitespace),
 * checks section headers itself (so empty sections are seen) and stops inih
 * at the first error by reporting end of file. */
#define _GNU_SOURCE
#include <ctype.h>
#include <ini.h>

#include "config/config-internal.h"
#include "common/util.h"

#define SERVICES_MAX 256

typedef struct ParseContext {
        const char *path;
        FILE *f;
        char *buf;
        size_t allocated;
        unsigned line;
        Config *config;

        SectionKind kind;
        char section[16 + SERVICE_NAME_MAX];    /* as printed: service "api" */
        unsigned section_line;
        void *section_base;
        unsigned key_lines[SECTION_ITEMS_MAX];
        unsigned agent_line, s3_line;
        bool addressing_set;

        char *error;
        int error_r;
} ParseContext;

_printf_(3, 4)
static int fail(ParseContext *ctx, int r, const char *fmt, ...) {
        va_list ap;

        if (ctx->error_r < 0)
                return ctx->error_r;
        ctx->error_r = r;
        va_start(ap, fmt);
        if (vasprintf(&ctx->error, fmt, ap) < 0) {
                ctx->error = NULL;
                ctx->error_r = -ENOMEM;
        }
        va_end(ap);
        return ctx->error_r;
}

static int fail_taken(ParseContext *ctx, int r, char *error) {
        if (ctx->error_r < 0) {
                free(error);
                return ctx->error_r;
        }
        ctx->error_r = error ? r : -ENOMEM;
        ctx->error = error;
        return ctx->error_r;
}

/* For failures that did not explain themselves (out of memory). */
static int fail_errno(ParseContext *ctx, int r) {
        if (r < 0 && ctx->error_r == 0)
                return fail(ctx, r, "%s:%u: %s", ctx->path, ctx->line, strerror(-r));
        return r;
}

static int section_finish(ParseContext *ctx) {
        SectionInfo info = {
                .path = ctx->path,
                .name = ctx->section,
                .line = ctx->section_line,
                .key_lines = ctx->key_lines,
        };
        char *error = NULL;
        int r = 0;

        if (ctx->kind == SECTION_S3)
                r = config_check_s3(&ctx->config->s3, ctx->addressing_set, &info, &error);
        else if (ctx->kind == SECTION_SERVICE)
                r = config_check_service(ctx->config, ctx->section_base, &info, &error);
        if (r < 0)
                return fail_taken(ctx, r, error);
        return 0;
}

static int service_begin(ParseContext *ctx, const char *name) {
        Config *c = ctx->config;
        ServiceConfig *services;

        if (!config_service_name_is_valid(name))
                return fail(ctx, -EINVAL, "%s:%u: [%s]: service name must be 1-%d characters of "
                            "A-Z a-z 0-9 _ . - not starting with '.'",
                            ctx->path, ctx->line, ctx->section, SERVICE_NAME_MAX);
        if (config_find_service(c, name))
                return fail(ctx, -EINVAL, "%s:%u: [%s]: duplicate service \"%s\"",
                            ctx->path, ctx->line, ctx->section, name);
        if (c->n_services >= SERVICES_MAX)
                return fail(ctx, -EINVAL, "%s:%u: [%s]: too many services (max %d)",
                            ctx->path, ctx->line, ctx->section, SERVICES_MAX);
        services = reallocarray(c->services, c->n_services + 1, sizeof(ServiceConfig));
        if (!services)
                return -ENOMEM;
        c->services = services;
        if (config_service_defaults(&services[c->n_services], name) < 0) {
                config_service_done(&services[c->n_services]);
                return -ENOMEM;
        }
        ctx->section_base = &services[c->n_services++];
        ctx->kind = SECTION_SERVICE;
        return 0;
}

/* [service "NAME"]: the name between the quotes, or NULL. */
static char *service_name(char *header) {
        char *p, *end;

        if (strncmp(header, "service", 7) != 0 || !isspace((unsigned char) header[7]))
                return NULL;
        p = header + 7;
        while (isspace((unsigned char) *p))
                p++;
        end = p + strlen(p);
        if (*p != '"' || end - p < 2 || end[-1] != '"')
                return NULL;
        end[-1] = '\0';
        return p + 1;
}

static int singleton_begin(ParseContext *ctx, SectionKind kind, unsigned *header_line, void *base) {
        if (*header_line > 0)
                return fail(ctx, -EINVAL, "%s:%u: [%s]: duplicate section, first on line %u",
                            ctx->path, ctx->line, ctx->section, *header_line);
        *header_line = ctx->line;
        ctx->kind = kind;
        ctx->section_base = base;
        return 0;
}

/* header is the text between '[' and ']', trimmed. */
static int section_begin(ParseContext *ctx, char *header) {
        char *name;
        int r;

        r = section_finish(ctx);
        if (r < 0)
                return r;
        ctx->kind = SECTION_NONE;
        ctx->section_line = ctx->line;
        memset(ctx->key_lines, 0, sizeof(ctx->key_lines));
        if (strlen(header) >= sizeof(ctx->section))
                return fail(ctx, -EINVAL, "%s:%u: section header too long", ctx->path, ctx->line);
        strcpy(ctx->section, header);

        if (streq(header, "agent"))
                return singleton_begin(ctx, SECTION_AGENT, &ctx->agent_line, &ctx->config->agent);
        if (streq(header, "s3"))
                return singleton_begin(ctx, SECTION_S3, &ctx->s3_line, &ctx->config->s3);
        name = service_name(header);
        if (name)
                return service_begin(ctx, name);
        if (strncmp(header, "service", 7) == 0)
                return fail(ctx, -EINVAL, "%s:%u: [%s]: a service section needs a quoted name: "
                            "[service \"NAME\"]", ctx->path, ctx->line, ctx->section);
        return fail(ctx, -EINVAL, "%s:%u: [%s]: unknown section, expected [agent], [s3] or "
                    "[service \"NAME\"]", ctx->path, ctx->line, ctx->section);
}

/* Strips comments and surrounding whitespace in place. A ';' or '#' starts a
 * comment at the start of a line or after whitespace, so "a;b" and URLs with
 * fragments stay intact but "60s ; per host" loses its comment. */
static char *line_normalize(char *s) {
        size_t n;

        while (isspace((unsigned char) *s))
                s++;
        for (char *p = s; *p; p++)
                if ((*p == ';' || *p == '#') && (p == s || isspace((unsigned char) p[-1]))) {
                        *p = '\0';
                        break;
                }
        n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                s[--n] = '\0';
        return s;
}

static int header_check(ParseContext *ctx, const char *s) {
        _cleanup_free_ char *header = NULL;
        size_t n = strlen(s);

        if (n < 2 || s[n - 1] != ']')
                return fail(ctx, -EINVAL, "%s:%u: section header must end with ']'", ctx->path, ctx->line);
        header = strndup(s + 1, n - 2);
        if (!header)
                return -ENOMEM;
        return section_begin(ctx, line_normalize(header));
}

static int line_check(ParseContext *ctx, const char *s, int size) {
        for (const char *p = s; *p; p++)
                if (iscntrl((unsigned char) *p) && *p != '\t')
                        return fail(ctx, -EINVAL, "%s:%u: line contains a control character",
                                    ctx->path, ctx->line);
        /* inih's line buffer holds the text, "\n" and NUL. */
        if (strlen(s) + 2 >= (size_t) size)
                return fail(ctx, -EINVAL, "%s:%u: line too long (max %d characters without comments)",
                            ctx->path, ctx->line, size - 3);
        if (*s == '[')
                return header_check(ctx, s);
        if (*s && (*s == '=' || !strchr(s, '=')))
                return fail(ctx, -EINVAL, "%s:%u: expected KEY = VALUE or [SECTION], got \"%s\"",
                            ctx->path, ctx->line, s);
        return 0;
}

/* An ini_reader: hands inih one normalized line per physical line, so that
 * ctx->line is the line of every handler call. NULL ends the parse. */
static char *config_reader(char *str, int size, void *userdata) {
        ParseContext *ctx = userdata;
        ssize_t len;
        char *s;

        if (ctx->error_r < 0)
                return NULL;
        errno = 0;
        len = getline(&ctx->buf, &ctx->allocated, ctx->f);
        if (len < 0) {
                if (ferror(ctx->f))
                        fail(ctx, errno > 0 ? -errno : -EIO, "%s: read error: %s", ctx->path,
                             strerror(errno > 0 ? errno : EIO));
                return NULL;
        }
        ctx->line++;
        if ((size_t) len != strlen(ctx->buf)) {
                fail(ctx, -EINVAL, "%s:%u: line contains a NUL byte", ctx->path, ctx->line);
                return NULL;
        }
        s = ctx->buf;
        if (ctx->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;    /* UTF-8 byte order mark */
        s = line_normalize(s);
        if (fail_errno(ctx, line_check(ctx, s, size)) < 0)
                return NULL;
        snprintf(str, (size_t) size, "%s\n", s);
        return str;
}

static int config_assign(ParseContext *ctx, const char *key, const char *value) {
        _cleanup_free_ char *problem = NULL;
        const ConfigItem *item;
        size_t i;
        int r;

        if (ctx->kind == SECTION_NONE)
                return fail(ctx, -EINVAL, "%s:%u: %s: keys must follow a section header like [agent]",
                            ctx->path, ctx->line, key);
        item = config_item_find(ctx->kind, key, &i);
        if (!item)
                return fail(ctx, -EINVAL, "%s:%u: [%s] %s: unknown key", ctx->path, ctx->line,
                            ctx->section, key);
        if (ctx->key_lines[i] > 0)
                return fail(ctx, -EINVAL, "%s:%u: [%s] %s: duplicate key, first set on line %u",
                            ctx->path, ctx->line, ctx->section, key, ctx->key_lines[i]);
        ctx->key_lines[i] = ctx->line;
        r = config_item_parse(item, value, ctx->section_base, &problem);
        if (r == -ENOMEM && !problem)
                return fail(ctx, r, "%s: out of memory", ctx->path);
        if (r < 0)
                return fail(ctx, -EINVAL, "%s:%u: [%s] %s: %s", ctx->path, ctx->line, ctx->section,
                            key, strempty(problem));
        if (ctx->kind == SECTION_S3 && streq(key, "addressing"))
                ctx->addressing_set = true;
        return 0;
}

static int config_handler(void *userdata, const char *section, const char *key, const char *value) {
        ParseContext *ctx = userdata;

        if (ctx->error_r < 0)
                return 0;
        return fail_errno(ctx, config_assign(ctx, key, value)) >= 0;
}

static Config *config_new(const char *path) {
        _cleanup_config_ Config *c = calloc(1, sizeof(Config));

        if (!c)
                return NULL;
        c->path = strdup(path);
        if (!c->path || config_agent_defaults(&c->agent) < 0 || config_s3_defaults(&c->s3) < 0)
                return NULL;
        return TAKE_PTR(c);
}

static int config_parse(ParseContext *ctx) {
        int r;

        r = ini_parse_stream(config_reader, ctx, config_handler, ctx);
        if (ctx->error_r < 0)
                return ctx->error_r;
        if (r == -2)
                return fail(ctx, -ENOMEM, "%s: out of memory", ctx->path);
        if (r != 0)
                return fail(ctx, -EINVAL, "%s:%d: syntax error", ctx->path, r);
        /* No service is valid: a freshly installed package's file has none
         * yet, and the agent idles until one is added and it is reloaded. */
        return fail_errno(ctx, section_finish(ctx));
}

int config_load(const char *path, Config **ret, char **ret_error) {
        _cleanup_config_ Config *c = NULL;
        _cleanup_fclose_ FILE *f = NULL;
        ParseContext ctx = { .path = path };
        int r;

        if (!path || !ret)
                return -EINVAL;
        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                return error_set(ret_error, r, "%s: cannot open: %s", path, strerror(-r));
        }
        c = config_new(path);
        if (!c)
                return error_set(ret_error, -ENOMEM, "%s: out of memory", path);
        ctx.f = f;
        ctx.config = c;
        r = config_parse(&ctx);
        free(ctx.buf);
        if (r < 0) {
                if (ret_error) {
                        free(*ret_error);
                        *ret_error = TAKE_PTR(ctx.error);
                }
                free(ctx.error);
                return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->path);
        config_agent_done(&c->agent);
        config_s3_done(&c->s3);
        for (size_t i = 0; i < c->n_services; i++)
                config_service_done(&c->services[i]);
        free(c->services);
        free(c);
        return NULL;
}

const ServiceConfig *config_find_service(const Config *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (size_t i = 0; i < c->n_services; i++)
                if (streq(c->services[i].name, name))
                        return &c->services[i];
        return NULL;
}

static int print_section(FILE *f, const char *header, SectionKind kind, const void *base) {
        size_t n;
        const ConfigItem *items = config_items(kind, &n);

        fprintf(f, "[%s]\n", header);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *v = NULL;
                int r = config_item_format(&items[i], base, &v);
                if (r < 0)
                        return r;
                fprintf(f, "%s =%s%s\n", items[i].key, *v ? " " : "", v);
        }
        return 0;
}

int config_print(const Config *c, FILE *f) {
        int r;

        if (!c || !f)
                return -EINVAL;
        fprintf(f, "# %s, normalized: every key with its effective value\n", c->path);
        r = print_section(f, "agent", SECTION_AGENT, &c->agent);
        if (r < 0)
                return r;
        fputc('\n', f);
        r = print_section(f, "s3", SECTION_S3, &c->s3);
        for (size_t i = 0; r >= 0 && i < c->n_services; i++) {
                _cleanup_free_ char *header = NULL;

                if (asprintf(&header, "service \"%s\"", c->services[i].name) < 0)
                        return -ENOMEM;
                fputc('\n', f);
                r = print_section(f, header, SECTION_SERVICE, &c->services[i]);
        }
        if (r < 0)
                return r;
        if (fflush(f) != 0 || ferror(f))
                return -EIO;
        return 0;
}
