/* syntax.c: the line syntax of deploy.ini: comments, section headers,
 * KEY = VALUE, and the double-quoted form of a value that config_print
 * writes so that every value loads back as it was.
 *
 * A ';' or '#' starts a comment at the start of a line or after whitespace,
 * so "a;b" and URLs with fragments stay intact but "60s ; per host" loses its
 * comment. A value that is one double-quoted string (optionally followed by
 * a comment) is taken without its quotes, with \" and \\ standing for " and
 * \; any other value is taken as written, as before quoting existed (so
 * `health_command = "/bin/check" --fast` keeps its quotes for the shell). */
#include <ctype.h>

#include "config/config-internal.h"
#include "common/util.h"

static bool is_comment_at(const char *line, const char *p) {
        return (*p == ';' || *p == '#') && (p == line || isspace((unsigned char) p[-1]));
}

static char *comment_start(char *line) {
        for (char *p = line; *p; p++)
                if (is_comment_at(line, p))
                        return p;
        return NULL;
}

static char *trim(char *s) {
        size_t n;

        while (isspace((unsigned char) *s))
                s++;
        n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                s[--n] = '\0';
        return s;
}

/* The end of the quoted string that starts at s (its closing quote), or NULL
 * when s is not one well-formed quoted string followed by blanks and an
 * optional comment. */
static const char *quoted_end(const char *s) {
        const char *p = s + 1, *rest;

        if (*s != '"')
                return NULL;
        for (; *p && *p != '"'; p++)
                if (*p == '\\') {
                        if (p[1] != '"' && p[1] != '\\')
                                return NULL;
                        p++;
                }
        if (*p != '"')
                return NULL;
        for (rest = p + 1; isspace((unsigned char) *rest); rest++)
                ;
        return *rest == '\0' || *rest == ';' || *rest == '#' ? p : NULL;
}

/* Decodes the quoted value at s in place; false (s untouched) when s is not
 * one quoted string. */
static bool unquote(char *s) {
        const char *end = quoted_end(s), *r = s + 1;
        char *w = s;

        if (!end)
                return false;
        while (r < end) {
                if (*r == '\\')
                        r++;
                *w++ = *r++;
        }
        *w = '\0';
        return true;
}

ConfigLineKind config_line_split(char *line, char **ret_a, char **ret_b) {
        char *s = line, *c, *eq, *v;
        size_t n;

        while (isspace((unsigned char) *s))
                s++;
        if (*s == '\0' || *s == ';' || *s == '#')
                return CONFIG_LINE_BLANK;
        c = comment_start(s);
        if (*s == '[') {
                if (c)
                        *c = '\0';
                s = trim(s);
                n = strlen(s);
                if (n < 2 || s[n - 1] != ']')
                        return *ret_a = s, CONFIG_LINE_BAD_HEADER;
                s[n - 1] = '\0';
                return *ret_a = trim(s + 1), CONFIG_LINE_HEADER;
        }
        eq = strchr(s, '=');
        if (!eq || eq == s || (c && c < eq)) {
                if (c)
                        *c = '\0';
                return *ret_a = trim(s), CONFIG_LINE_BAD;
        }
        *eq = '\0';
        for (v = eq + 1; isspace((unsigned char) *v); v++)
                ;
        if (!unquote(v)) {
                if (c)
                        *c = '\0';
                v = trim(v);
        }
        *ret_a = trim(s);
        *ret_b = v;
        return CONFIG_LINE_ASSIGN;
}

static bool needs_quotes(const char *v) {
        size_t n = strlen(v);

        if (n == 0)
                return false;
        if (*v == '"' || *v == ';' || *v == '#' || isspace((unsigned char) v[0]) ||
            isspace((unsigned char) v[n - 1]))
                return true;
        for (const char *p = v; *p; p++)
                if (is_comment_at(v, p))
                        return true;
        return false;
}

char *config_value_quote(const char *v) {
        char *out, *w;

        if (!needs_quotes(v))
                return strdup(v);
        out = malloc(2 * strlen(v) + 3);
        if (!out)
                return NULL;
        w = out;
        *w++ = '"';
        for (const char *p = v; *p; p++) {
                if (*p == '"' || *p == '\\')
                        *w++ = '\\';
                *w++ = *p;
        }
        *w++ = '"';
        *w = '\0';
        return out;
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool config_utf8_is_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned n, cp;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                if (*p >= 0xC2 && *p <= 0xDF)
                        n = 1, cp = *p & 0x1F;
                else if (*p >= 0xE0 && *p <= 0xEF)
                        n = 2, cp = *p & 0x0F;
                else if (*p >= 0xF0 && *p <= 0xF4)
                        n = 3, cp = *p & 0x07;
                else
                        return false;
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xC0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[i] & 0x3F);
                }
                if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
                    (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
                        return false;
                p += n + 1;
        }
        return true;
}
