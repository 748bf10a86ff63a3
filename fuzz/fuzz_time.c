/* Small parsers of outside text: Go durations (progress ticks), RFC 3339
 * (ARGO_DEADLINE), booleans, integers (ports, grace period, reserve) and
 * Retry-After (an API server's answer).
 *
 * Properties, each against a reference written here:
 *  - Go duration: the sign is respected, "-"+s is exactly the negation of s
 *    ("+"+s is s), a result prints back as "<n>ns" and parses to itself, and
 *    a sum of whole-number terms equals the exact sum (rejected past int64);
 *  - RFC 3339: accepted exactly when the reference accepts, with the same
 *    value; a result re-formatted as "YYYY-MM-DDTHH:MM:SS.mmmZ" parses back;
 *  - bool: exactly Go's twelve spellings;
 *  - int: exactly the reference (ASCII blanks, sign, digits, range);
 *  - Retry-After: delta seconds are value*1000 (saturating), a date gives a
 *    delay no longer than the span of four-digit years. */
#include <inttypes.h>

#include "argowait/backoff.h"
#include "argowait/config.h"
#include "fuzz_common.h"

typedef __int128 i128;

static bool c_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* ---- int ---- */

static bool ref_int(const char *s, int64_t min, int64_t max, int64_t *out) {
  while (c_space(*s)) s++;
  bool neg = false;
  if (*s == '+' || *s == '-') neg = *s++ == '-';
  if (*s < '0' || *s > '9') return false;
  i128 v = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    v = v * 10 + (*s - '0');
    if (v > (i128)INT64_MAX + 1) return false;
  }
  while (c_space(*s)) s++;
  if (*s) return false;
  if (neg) v = -v;
  if (v < INT64_MIN || v > INT64_MAX || v < min || v > max) return false;
  *out = (int64_t)v;
  return true;
}

static void check_int(const char *s) {
  static const int64_t ranges[][2] = {{INT64_MIN, INT64_MAX}, {1, 65535}, {0, INT64_MAX}};
  for (size_t r = 0; r < 3; r++) {
    int64_t got = 0, want = 0;
    int rc = aw_parse_int(s, ranges[r][0], ranges[r][1], &got);
    bool ok = ref_int(s, ranges[r][0], ranges[r][1], &want);
    FUZZ_CHECK((rc == 0) == ok, "aw_parse_int rc %d, reference %d (range %zu)", rc, ok, r);
    if (ok) FUZZ_CHECK(got == want, "aw_parse_int %" PRId64 ", reference %" PRId64, got, want);
  }
}

/* ---- bool ---- */

static void check_bool(const char *s) {
  static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
  int want = -1;
  for (size_t i = 0; i < 6; i++) {
    if (!strcmp(s, yes[i])) want = 1;
    if (!strcmp(s, no[i])) want = 0;
  }
  bool got = false;
  int rc = aw_parse_bool(s, &got);
  FUZZ_CHECK((rc == 0) == (want >= 0), "aw_parse_bool rc %d for a %s spelling", rc,
             want >= 0 ? "valid" : "invalid");
  if (rc == 0) FUZZ_CHECK(got == (want == 1), "aw_parse_bool value");
}

/* ---- Go durations ---- */

static int64_t ref_unit(const char *u, size_t len) {
  static const struct { const char *n; int64_t ns; } units[] = {
      {"ns", 1}, {"us", 1000}, {"\xC2\xB5s", 1000}, {"\xCE\xBCs", 1000},
      {"ms", 1000000}, {"s", 1000000000LL}, {"m", 60000000000LL}, {"h", 3600000000000LL}};
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strlen(units[i].n) == len && !memcmp(units[i].n, u, len)) return units[i].ns;
  return 0;
}

/* Whole-number terms only ("1h30m", "500ms"); *applies false otherwise. */
static bool ref_duration_whole(const char *s, bool *applies, i128 *sum) {
  *applies = false;
  *sum = 0;
  if (!*s) return false;
  while (*s) {
    if (*s < '0' || *s > '9') return false;
    i128 v = 0;
    bool huge = false;
    for (; *s >= '0' && *s <= '9'; s++) {
      v = v * 10 + (*s - '0');
      if (v > ((i128)1 << 64)) huge = true, v = (i128)1 << 64;
    }
    const char *u = s;
    while (*s && *s != '.' && (*s < '0' || *s > '9')) s++;
    if (*s == '.') return false; /* a fraction: not for this reference */
    int64_t unit = ref_unit(u, (size_t)(s - u));
    if (!unit) {
      *applies = true; /* a bad unit is an error for every parser */
      return false;
    }
    (void)huge;
    *sum += v * unit;
    if (*sum > ((i128)1 << 64)) *sum = (i128)1 << 64;
  }
  *applies = true;
  return true;
}

static void check_duration(const char *s) {
  int64_t v = 0;
  int rc = aw_parse_go_duration(s, &v);
  FUZZ_CHECK(rc == 0 || rc == -1, "duration rc %d", rc);
  bool signed_input = s[0] == '-' || s[0] == '+';
  if (rc == 0 && s[0] != '-') FUZZ_CHECK(v >= 0, "\"%s\" parsed negative: %" PRId64, s, v);
  if (rc == 0 && s[0] == '-') FUZZ_CHECK(v <= 0, "\"%s\" parsed positive: %" PRId64, s, v);

  if (!signed_input && strlen(s) < 4096) {
    size_t n = strlen(s);
    char *neg = malloc(n + 2), *pos = malloc(n + 2);
    if (!neg || !pos) abort();
    neg[0] = '-';
    pos[0] = '+';
    memcpy(neg + 1, s, n + 1);
    memcpy(pos + 1, s, n + 1);
    int64_t nv = 0, pv = 0;
    int nrc = aw_parse_go_duration(neg, &nv), prc = aw_parse_go_duration(pos, &pv);
    FUZZ_CHECK(prc == rc && (rc != 0 || pv == v), "\"+%s\" differs from \"%s\"", s, s);
    if (rc == 0) FUZZ_CHECK(nrc == 0 && nv == -v, "\"-%s\" is not the negation", s);
    if (nrc == 0 && nv != INT64_MIN) FUZZ_CHECK(rc == 0 && v == -nv, "\"-%s\" parses but \"%s\" not", s, s);

    bool applies;
    i128 sum;
    bool ok = ref_duration_whole(s, &applies, &sum);
    if (applies && strcmp(s, "0") != 0) { /* Go's one unitless number */
      bool want_ok = ok && sum <= INT64_MAX;
      FUZZ_CHECK((rc == 0) == want_ok, "\"%s\": rc %d, reference %d", s, rc, want_ok);
      if (want_ok) FUZZ_CHECK(v == (int64_t)sum, "\"%s\": %" PRId64 " != reference", s, v);
    }
    free(neg);
    free(pos);
  }
  if (rc == 0) {
    char back[48];
    if (v >= 0) snprintf(back, sizeof(back), "%" PRId64 "ns", v);
    else snprintf(back, sizeof(back), "-%" PRIu64 "ns", (uint64_t)0 - (uint64_t)v);
    int64_t again = 0;
    FUZZ_CHECK(aw_parse_go_duration(back, &again) == 0 && again == v,
               "\"%s\" does not parse back to %" PRId64, back, v);
  }
}

/* ---- RFC 3339 ---- */

static int64_t days_from_civil(int64_t y, int m, int d) { /* H. Hinnant's algorithm */
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static bool digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

static bool ref_rfc3339(const char *s, int64_t *ms) {
  int y, mo, d, h, mi, se;
  if (strlen(s) < 20) return false;
  if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
      !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) || s[13] != ':' ||
      !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
    return false;
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
      se > 59)
    return false;
  const char *p = s + 19;
  int64_t frac = 0;
  if (*p == '.') {
    p++;
    int n = 0;
    for (; *p >= '0' && *p <= '9'; p++, n++)
      if (n < 3) frac = frac * 10 + (*p - '0');
    if (n == 0) return false;
    for (; n < 3; n++) frac *= 10;
  }
  int64_t off = 0;
  if (!strcmp(p, "Z")) {
    off = 0;
  } else {
    int oh, om;
    if ((p[0] != '+' && p[0] != '-') || !digits(p + 1, 2, &oh) || p[3] != ':' ||
        !digits(p + 4, 2, &om) || p[6] || oh > 23 || om > 59)
      return false;
    off = (oh * 3600 + om * 60) * (p[0] == '-' ? -1 : 1);
  }
  *ms = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se) - off) * 1000 + frac;
  return true;
}

static void check_rfc3339(const char *s) {
  int64_t got = 0, want = 0;
  int rc = aw_parse_rfc3339(s, &got);
  bool ok = ref_rfc3339(s, &want);
  FUZZ_CHECK((rc == 0) == ok, "aw_parse_rfc3339(\"%s\") rc %d, reference %d", s, rc, ok);
  if (!ok) return;
  FUZZ_CHECK(got == want, "aw_parse_rfc3339(\"%s\") = %" PRId64 ", reference %" PRId64, s, got, want);
  int64_t secs = got >= 0 ? got / 1000 : -((-got + 999) / 1000);
  int64_t msec = got - secs * 1000;
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  int64_t rem = secs - days * 86400;
  int64_t y;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999) return;
  char back[40];
  snprintf(back, sizeof(back), "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d,
           (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), (int)msec);
  int64_t again = 0;
  FUZZ_CHECK(aw_parse_rfc3339(back, &again) == 0 && again == got, "\"%s\" (from \"%s\") does not round-trip",
             back, s);
}

/* ---- Retry-After ---- */

static void check_retry_after(const char *s) {
  const int64_t now = 1795444740000LL; /* 2026-11-22T14:39:00Z */
  uint64_t ms = 0;
  int rc = aw_parse_retry_after(s, now, &ms);
  FUZZ_CHECK(rc == 0 || rc == -1, "retry-after rc %d", rc);
  const char *a = s;
  while (*a == ' ' || *a == '\t') a++;
  size_t len = strlen(a);
  while (len && (a[len - 1] == ' ' || a[len - 1] == '\t')) len--;
  bool all_digits = len > 0;
  for (size_t i = 0; i < len; i++)
    if (a[i] < '0' || a[i] > '9') all_digits = false;
  if (all_digits) {
    i128 v = 0;
    for (size_t i = 0; i < len && v < ((i128)1 << 70); i++) v = v * 10 + (a[i] - '0');
    i128 want = v * 1000 > (i128)UINT64_MAX ? (i128)UINT64_MAX : v * 1000;
    FUZZ_CHECK(rc == 0, "delta-seconds \"%s\" rejected", s);
    /* The implementation saturates a little early (at UINT64_MAX/1000
     * seconds); any such delay is "forever" all the same. */
    if (want < (i128)(UINT64_MAX / 1000) * 1000)
      FUZZ_CHECK((i128)ms == want, "delta-seconds \"%s\" gave %" PRIu64 " ms", s, ms);
  } else if (rc == 0) {
    FUZZ_CHECK(len == 29 && !memcmp(a + 25, " GMT", 4), "\"%s\" accepted as a date", s);
    FUZZ_CHECK(ms <= (uint64_t)253402300800000LL, "date delay %" PRIu64 " ms", ms);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = fuzz_cstr(data, size);
  check_int(s);
  check_bool(s);
  check_duration(s);
  check_rfc3339(s);
  check_retry_after(s);
  free(s);
  return 0;
}
