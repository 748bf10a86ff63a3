#include "argowait/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void aw_strbuf_init(aw_strbuf *sb) { memset(sb, 0, sizeof(*sb)); }

void aw_strbuf_free(aw_strbuf *sb) {
  free(sb->data);
  aw_strbuf_init(sb);
}

static int strbuf_reserve(aw_strbuf *sb, size_t extra) {
  if (extra > SIZE_MAX - sb->len - 1) return -1;
  size_t need = sb->len + extra + 1;
  if (need <= sb->cap) return 0;
  size_t cap = sb->cap ? sb->cap : 64;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *data = realloc(sb->data, cap);
  if (!data) return -1;
  sb->data = data;
  sb->cap = cap;
  return 0;
}

int aw_strbuf_append(aw_strbuf *sb, const void *data, size_t len) {
  if (strbuf_reserve(sb, len) != 0) return -1;
  if (len) memcpy(sb->data + sb->len, data, len);
  sb->len += len;
  sb->data[sb->len] = '\0';
  return 0;
}

int aw_strbuf_appends(aw_strbuf *sb, const char *s) {
  return aw_strbuf_append(sb, s, strlen(s));
}

int aw_strbuf_appendf(aw_strbuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  int rc = -1;
  if (n >= 0 && strbuf_reserve(sb, (size_t)n) == 0) {
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap2);
    sb->len += (size_t)n;
    rc = 0;
  }
  va_end(ap2);
  return rc;
}

char *aw_strbuf_take(aw_strbuf *sb) {
  char *out = sb->data ? sb->data : strdup("");
  aw_strbuf_init(sb);
  return out;
}

void aw_reasons_init(aw_reasons *r) { memset(r, 0, sizeof(*r)); }

void aw_reasons_free(aw_reasons *r) {
  for (size_t i = 0; i < r->count; i++) free(r->items[i]);
  free(r->items);
  aw_reasons_init(r);
}

/* A reason is one line: newlines and other control bytes become spaces, so
 * a file name or server message cannot forge extra lines. */
static void flatten_line(char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

void aw_reasons_addv(aw_reasons *r, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  if (n >= 0) {
    char *line = malloc((size_t)n + 1);
    if (line) {
      vsnprintf(line, (size_t)n + 1, fmt, ap2);
      flatten_line(line);
      char **items = realloc(r->items, (r->count + 1) * sizeof(*items));
      if (items) {
        r->items = items;
        r->items[r->count++] = line;
      } else {
        free(line);
      }
    }
  }
  va_end(ap2);
}

void aw_reasons_add(aw_reasons *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(r, fmt, ap);
  va_end(ap);
}

void aw_reasons_move(aw_reasons *dst, aw_reasons *src) {
  if (!src->count) return;
  char **items = realloc(dst->items, (dst->count + src->count) * sizeof(*items));
  if (!items) return;
  memcpy(items + dst->count, src->items, src->count * sizeof(*items));
  dst->items = items;
  dst->count += src->count;
  free(src->items);
  aw_reasons_init(src);
}

/* Bytes the character led by c claims (1 for ASCII and for stray bytes). */
static size_t utf8_claimed_len(unsigned char c) {
  if (c >= 0xF0 && c <= 0xF7) return 4;
  if (c >= 0xE0) return c <= 0xEF ? 3 : 1;
  if (c >= 0xC0) return 2;
  return 1;
}

static bool is_utf8_continuation(char c) {
  return ((unsigned char)c & 0xC0) == 0x80;
}

size_t aw_utf8_cut(const char *s, size_t len, size_t max) {
  if (len <= max) return len;
  /* A character is at most 4 bytes, so the lead byte of one split by the
   * cut is at most 3 bytes back: no need to walk further over stray
   * continuation bytes. */
  size_t lead = max;
  while (lead > 0 && max - lead < 3 && is_utf8_continuation(s[lead])) lead--;
  if (is_utf8_continuation(s[lead])) return max;
  /* Only a character that reaches past the cut is dropped; stray bytes
   * before the cut (invalid anyway) are kept rather than eating the text
   * before them. */
  return lead + utf8_claimed_len((unsigned char)s[lead]) > max ? lead : max;
}

char *aw_reasons_join(const aw_reasons *r, size_t max_bytes) {
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  for (size_t i = 0; i < r->count; i++) {
    if (i) aw_strbuf_appends(&sb, "; ");
    aw_strbuf_appends(&sb, r->items[i]);
    if (sb.len > max_bytes) break;
  }
  char *out = aw_strbuf_take(&sb);
  if (out) out[aw_utf8_cut(out, strlen(out), max_bytes)] = '\0';
  return out;
}

char *aw_strdupf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}
