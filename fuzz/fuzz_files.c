/* Files the main container writes and the wait executor parses: the exitcode
 * file (aw_exitcode_parse) and the progress file (aw_progress_last, and
 * aw_progress_parse for one line). Both are untrusted (P7, P8).
 *
 * Properties, against reference parsers written here:
 *  - exitcode: -1 exactly for empty/blank contents; 0 only for a decimal
 *    number (optional '-', surrounding ASCII whitespace) whose value is the
 *    code given back; every plain number within int range is accepted; all
 *    else is 1 (malformed);
 *  - progress: the result is the last non-blank line, as "N/M" with both
 *    parts digits only (so no other file text can ever be reported as
 *    progress); on failure the output is the empty string; the output buffer
 *    is never overrun (it is an exact-size heap buffer). */
#include <limits.h>

#include "argowait/taskresult.h"
#include "argowait/watch.h"
#include "fuzz_common.h"

static bool c_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* ---- exitcode ---- */

typedef enum { EC_BLANK, EC_NUMBER, EC_MALFORMED } ec_kind;

/* The reference: *canonical says "no leading zero, within int range". */
static ec_kind ref_exitcode(const uint8_t *d, size_t len, long long *value, bool *canonical) {
  size_t i = 0;
  while (i < len && c_space(d[i])) i++;
  while (len > i && c_space(d[len - 1])) len--;
  if (i == len) return EC_BLANK;
  bool neg = false;
  if (d[i] == '-') {
    neg = true;
    i++;
  }
  if (i == len) return EC_MALFORMED;
  size_t first = i;
  long long v = 0;
  bool big = false;
  for (; i < len; i++) {
    if (d[i] < '0' || d[i] > '9') return EC_MALFORMED;
    if (v > (LLONG_MAX - 9) / 10) big = true;
    else v = v * 10 + (d[i] - '0');
  }
  *canonical = !big && v <= INT_MAX && (d[first] != '0' || len - first == 1);
  *value = neg ? -v : v;
  return big || v > INT_MAX ? EC_MALFORMED : EC_NUMBER;
}

static void check_exitcode(const uint8_t *data, size_t size) {
  char *copy = fuzz_exact_copy(data, size);
  int code = 12345;
  int rc = aw_exitcode_parse(copy, size, &code);
  long long want = 0;
  bool canonical = false;
  ec_kind kind = ref_exitcode(data, size, &want, &canonical);
  FUZZ_CHECK(rc == -1 || rc == 0 || rc == 1, "exitcode rc %d", rc);
  FUZZ_CHECK((rc == -1) == (kind == EC_BLANK), "blank contents: rc %d, reference %d", rc, kind);
  if (rc == 0) {
    FUZZ_CHECK(kind == EC_NUMBER, "accepted a malformed exitcode file (%zu bytes) as %d", size, code);
    FUZZ_CHECK(code == want, "exitcode %d, the file says %lld", code, want);
  }
  if (kind == EC_NUMBER && canonical)
    FUZZ_CHECK(rc == 0, "rejected the plain number %lld (rc %d)", want, rc);
  if (kind == EC_MALFORMED) FUZZ_CHECK(rc == 1, "malformed file gave rc %d", rc);
  free(copy);
}

/* ---- progress ---- */

/* "N/M" with both parts digits only and within long long; trims c_space. */
static bool ref_progress_span(const uint8_t *s, size_t len, long long *n, long long *m) {
  size_t a = 0, b = len;
  while (a < b && c_space(s[a])) a++;
  while (b > a && c_space(s[b - 1])) b--;
  long long parts[2];
  for (int k = 0; k < 2; k++) {
    size_t start = a;
    unsigned long long v = 0;
    for (; a < b && s[a] >= '0' && s[a] <= '9'; a++) {
      if (v > (unsigned long long)LLONG_MAX / 10) return false; /* before it wraps */
      v = v * 10 + (unsigned)(s[a] - '0');
      if (v > (unsigned long long)LLONG_MAX) return false;
    }
    if (a == start) return false;
    parts[k] = (long long)v;
    if (k == 0) {
      if (a == b || s[a] != '/') return false;
      a++;
    }
  }
  if (a != b) return false;
  *n = parts[0];
  *m = parts[1];
  return true;
}

/* The last line that is not all c_space; false when there is none or when it
 * does not parse. */
static bool ref_progress_last(const uint8_t *d, size_t len, long long *n, long long *m) {
  size_t end = len;
  for (;;) {
    size_t start = end;
    while (start > 0 && d[start - 1] != '\n') start--;
    bool blank = true;
    for (size_t i = start; i < end; i++)
      if (!c_space(d[i])) blank = false;
    if (!blank) return ref_progress_span(d + start, end - start, n, m);
    if (start == 0) return false;
    end = start - 1;
  }
}

static void check_progress(const uint8_t *data, size_t size, size_t out_size) {
  char *copy = fuzz_exact_copy(data, size);
  char *out = malloc(out_size);
  if (!out) abort();
  memset(out, 'X', out_size);
  int rc = aw_progress_last(copy, size, out, out_size);
  long long n = 0, m = 0;
  bool ok = ref_progress_last(data, size, &n, &m);
  char want[64];
  snprintf(want, sizeof(want), "%lld/%lld", n, m);
  bool fits = strlen(want) < out_size;
  FUZZ_CHECK(rc == 0 || rc == -1, "progress rc %d", rc);
  if (rc == 0) {
    FUZZ_CHECK(ok, "accepted a progress file whose last line is not N/M: %s", out);
    FUZZ_CHECK(strcmp(out, want) == 0, "progress %s, the file says %s", out, want);
    for (const char *p = out; *p; p++)
      FUZZ_CHECK((*p >= '0' && *p <= '9') || *p == '/', "non-digit in progress %s", out);
  } else {
    FUZZ_CHECK(out[0] == '\0', "failure left text in the output buffer");
    FUZZ_CHECK(!(ok && fits), "rejected the valid progress %s", want);
  }
  /* One line without NUL or newline: aw_progress_parse must agree. */
  if (!fuzz_has_nul(data, size) && !memchr(data, '\n', size)) {
    char *line = fuzz_cstr(data, size);
    long long pn = -1, pm = -1;
    int prc = aw_progress_parse(line, &pn, &pm);
    bool blank = true;
    for (size_t i = 0; i < size; i++)
      if (!c_space(data[i])) blank = false;
    if (!blank) {
      FUZZ_CHECK((prc == 0) == ok, "aw_progress_parse %d vs reference %d", prc, ok);
      if (prc == 0) FUZZ_CHECK(pn == n && pm == m, "aw_progress_parse %lld/%lld vs %s", pn, pm, want);
    } else {
      FUZZ_CHECK(prc == -1, "a blank line parsed as progress");
    }
    free(line);
  }
  free(out);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_exitcode(data, size);
  check_progress(data, size, 64); /* the executor's buffer */
  check_progress(data, size, 1 + (size ? data[0] % 12 : 0)); /* a tight one */
  aw_progress_last(NULL, 0, (char[4]){0}, 4);
  return 0;
}
