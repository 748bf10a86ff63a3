/* Shared helpers of the fuzz targets.
 *
 * Every target checks properties, not only "no crash": a violated property
 * prints what was wrong and aborts, which libFuzzer (and the replay driver)
 * treat as a crash. The checks here are written independently of the code
 * under test (our own UTF-8 validator, our own reference parsers), so that a
 * bug shared by both sides does not hide itself. */
#ifndef ARGOWAIT_FUZZ_COMMON_H
#define ARGOWAIT_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                              \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "fuzz property violated at %s:%d: %s\n  ", __FILE__, \
              __LINE__, #cond);                                            \
      fprintf(stderr, __VA_ARGS__);                                        \
      fprintf(stderr, "\n");                                               \
      abort();                                                             \
    }                                                                      \
  } while (0)

/* An exact-size heap copy (no NUL after it), so that ASan catches any read
 * past the end of what a parser was given. */
static inline char *fuzz_exact_copy(const uint8_t *data, size_t size) {
  char *p = malloc(size ? size : 1);
  if (!p) abort();
  if (size) memcpy(p, data, size);
  else p[0] = '\0'; /* never read for size 0; keeps the compiler calm */
  return p;
}

/* A NUL-terminated heap copy; the string ends at the first NUL of data. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
  char *p = malloc(size + 1);
  if (!p) abort();
  if (size) memcpy(p, data, size);
  p[size] = '\0';
  return p;
}

/* Length of the valid UTF-8 character at s, or 0 (RFC 3629: no overlongs,
 * no surrogates, nothing past U+10FFFF). Table-free on purpose: a second
 * implementation, not a copy of the one in src/. */
static inline size_t fuzz_utf8_char(const unsigned char *s, size_t avail) {
  if (avail == 0) return 0;
  unsigned c = s[0];
  if (c < 0x80) return 1;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) n = 3;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (avail < n) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return n;
}

static inline bool fuzz_utf8_valid(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len;) {
    size_t n = fuzz_utf8_char(u + i, len - i);
    if (!n) return false;
    i += n;
  }
  return true;
}

/* One printable line: no control byte at all (so no '\n', '\r', NUL). */
static inline bool fuzz_one_line(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7F) return false;
  return true;
}

static inline bool fuzz_has_nul(const uint8_t *data, size_t size) {
  return size && memchr(data, 0, size) != NULL;
}

#endif
