#include "argowait/jsonstr.h"

#include <stdint.h>
#include <stdlib.h>

#include "argowait/strbuf.h"

size_t aw_utf8_char_len(const unsigned char *s, size_t avail) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  size_t n;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (avail < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
  return n;
}

char *aw_json_quote(const char *bytes, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = (const unsigned char *)bytes;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  /* Any failed append is remembered: a literal missing a piece (its
   * closing quote above all) would corrupt the JSON it is inserted into. */
  int rc = aw_strbuf_appends(&sb, "\"");
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      rc |= aw_strbuf_append(&sb, esc, 2);
      i++;
    } else if (c < 0x20) {
      const char *short_esc = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
      if (short_esc) {
        rc |= aw_strbuf_appends(&sb, short_esc);
      } else {
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
        rc |= aw_strbuf_append(&sb, esc, 6);
      }
      i++;
    } else {
      size_t n = aw_utf8_char_len(s + i, len - i);
      if (n == 0) {
        rc |= aw_strbuf_appends(&sb, "\\ufffd");
        i++;
      } else {
        rc |= aw_strbuf_append(&sb, s + i, n);
        i += n;
      }
    }
  }
  rc |= aw_strbuf_appends(&sb, "\"");
  if (rc != 0) {
    aw_strbuf_free(&sb);
    return NULL;
  }
  return aw_strbuf_take(&sb);
}
