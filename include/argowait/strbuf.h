/* A growable byte buffer, and the list of failure reasons.
 *
 * Failure is data: every step that goes wrong appends one reason; the final
 * report's message and the termination log are both written from the list. */
#ifndef ARGOWAIT_STRBUF_H
#define ARGOWAIT_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *data; /* always NUL-terminated when non-NULL */
  size_t len;
  size_t cap;
} aw_strbuf;

void aw_strbuf_init(aw_strbuf *sb);
void aw_strbuf_free(aw_strbuf *sb);
/* Each returns 0, or -1 when memory ran out (the buffer is unchanged). */
int aw_strbuf_append(aw_strbuf *sb, const void *data, size_t len);
int aw_strbuf_appends(aw_strbuf *sb, const char *s);
int aw_strbuf_appendf(aw_strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands the bytes over (never NULL on success: "" for an empty buffer). */
char *aw_strbuf_take(aw_strbuf *sb);

/* A malloc'd formatted string, or NULL when memory ran out. */
char *aw_strdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ordered reasons, each one line. */
typedef struct {
  char **items;
  size_t count;
} aw_reasons;

void aw_reasons_init(aw_reasons *r);
void aw_reasons_free(aw_reasons *r);
void aw_reasons_add(aw_reasons *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void aw_reasons_addv(aw_reasons *r, const char *fmt, va_list ap);
/* Moves every item of src to the end of dst, leaving src empty. */
void aw_reasons_move(aw_reasons *dst, aw_reasons *src);
/* Joins with "; " and cuts at max_bytes without splitting a UTF-8
 * character. Returns a malloc'd string ("" when empty). */
char *aw_reasons_join(const aw_reasons *r, size_t max_bytes);

/* Cuts s (length len) to at most max bytes at a UTF-8 character boundary;
 * returns the new length. */
size_t aw_utf8_cut(const char *s, size_t len, size_t max);

#endif
