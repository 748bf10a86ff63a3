/* backoff.h uses size_t without including <stddef.h> (see the report);
 * until it does, it is included first here. */
#include <stddef.h>

#include "argowait/backoff.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "argowait/jsonstr.h"
#include "argowait/strbuf.h"
#include "civil.h"

/* A Status body is a few hundred bytes; anything far larger is not one, and
 * parsing it would only cost memory at the worst moment. */
#define STATUS_BODY_PARSE_MAX (1024 * 1024)
#define STATUS_MESSAGE_MAX 1024
#define BODY_PREFIX_MAX 200

/* ---- delays ------------------------------------------------------------- */

static double clamp01(double x) {
  if (!(x > 0)) return 0; /* also NaN */
  return x < 1 ? x : 1;
}

/* min(cap, initial * factor^attempt), in double so that nothing wraps:
 * pow saturates at infinity, which the cap then bounds. */
static double capped_growth(const aw_backoff_policy *p, unsigned attempt) {
  double cap = (double)p->cap_ms;
  double delay = (double)p->initial_ms;
  /* A factor below 1 (or NaN) would shrink the delay: treat it as 1. */
  if (delay > 0 && delay < cap && p->factor > 1)
    delay *= pow(p->factor, (double)attempt);
  return delay < cap ? delay : cap;
}

uint64_t aw_backoff_delay(const aw_backoff_policy *p, unsigned attempt,
                          double rand01) {
  double full = capped_growth(p, attempt);
  double low = full * (1 - clamp01(p->jitter));
  double delay = low + (full - low) * clamp01(rand01);
  uint64_t ms;
  /* (double)cap may round up past UINT64_MAX: compare before converting. */
  if (delay >= (double)p->cap_ms)
    ms = p->cap_ms;
  else
    ms = (uint64_t)delay;
  return ms > 0 ? ms : 1;
}

/* ---- Retry-After -------------------------------------------------------- */

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static int parse_delta_seconds(const char *s, size_t len, uint64_t *out_ms) {
  if (len == 0) return -1;
  uint64_t seconds = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    /* A huge delay is still a delay: saturate rather than reject. */
    if (seconds < UINT64_MAX / 1000)
      seconds = seconds * 10 + (uint64_t)(s[i] - '0');
  }
  *out_ms = seconds < UINT64_MAX / 1000 ? seconds * 1000 : UINT64_MAX;
  return 0;
}

static int index_of_name(const char *s, const char *const *names, int count) {
  for (int i = 0; i < count; i++)
    if (memcmp(s, names[i], 3) == 0) return i;
  return -1;
}

/* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT", as Unix milliseconds. */
static int parse_imf_fixdate(const char *s, size_t len, int64_t *out_ms) {
  static const char *const days[] = {"Mon", "Tue", "Wed", "Thu",
                                     "Fri", "Sat", "Sun"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
  int day, year, hour, minute, second;
  if (len != 29 || index_of_name(s, days, 7) < 0 || s[3] != ',' ||
      s[4] != ' ' || !aw_civil_digits(s + 5, 2, &day) || s[7] != ' ' ||
      s[11] != ' ' || !aw_civil_digits(s + 12, 4, &year) || s[16] != ' ' ||
      !aw_civil_digits(s + 17, 2, &hour) || s[19] != ':' ||
      !aw_civil_digits(s + 20, 2, &minute) || s[22] != ':' ||
      !aw_civil_digits(s + 23, 2, &second) || memcmp(s + 25, " GMT", 4) != 0)
    return -1;
  int month = index_of_name(s + 8, months, 12) + 1;
  if (month < 1 || day < 1 || day > aw_civil_days_in_month(year, month) ||
      hour > 23 || minute > 59 || second > 60)
    return -1;
  int64_t days_since_epoch = aw_civil_days_from_date(year, month, day);
  *out_ms =
      (days_since_epoch * 86400 + hour * 3600 + minute * 60 + second) * 1000;
  return 0;
}

int aw_parse_retry_after(const char *value, int64_t now_unix_ms,
                         uint64_t *out_ms) {
  if (!value) return -1;
  size_t start = 0, end = strlen(value);
  while (start < end && is_ows(value[start])) start++;
  while (end > start && is_ows(value[end - 1])) end--;
  const char *s = value + start;
  size_t len = end - start;
  if (len > 0 && s[0] >= '0' && s[0] <= '9')
    return parse_delta_seconds(s, len, out_ms);
  int64_t when_ms;
  if (parse_imf_fixdate(s, len, &when_ms) != 0) return -1;
  *out_ms = when_ms > now_unix_ms ? (uint64_t)(when_ms - now_unix_ms) : 0;
  return 0;
}

/* ---- the budget after SIGTERM ------------------------------------------- */

static uint64_t add_saturating(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* now + grace - back, but never before now. */
static uint64_t before_end(uint64_t now, uint64_t grace_ms, uint64_t back_ms) {
  return grace_ms > back_ms ? add_saturating(now, grace_ms - back_ms) : now;
}

void aw_budget_start(aw_budget *b, uint64_t now, uint64_t grace_ms,
                     uint64_t reserve_ms, uint64_t margin_ms) {
  b->active = true;
  b->hard_stop = before_end(now, grace_ms, margin_ms);
  b->reserve_at = before_end(now, grace_ms, reserve_ms);
  if (b->reserve_at > b->hard_stop) b->reserve_at = b->hard_stop;
}

uint64_t aw_budget_clip(const aw_budget *b, uint64_t now, uint64_t want) {
  if (!b->active) return want;
  if (now >= b->hard_stop) return 0;
  uint64_t left = b->hard_stop - now;
  return want < left ? want : left;
}

bool aw_budget_spent(const aw_budget *b, uint64_t now) {
  return b->active && now >= b->hard_stop;
}

/* ---- Kubernetes Status answers ------------------------------------------ */

typedef struct {
  bool parsed;   /* the body was a JSON object */
  char *reason;  /* NULL when absent */
  char *message; /* NULL when absent */
} k8s_status;

static char *string_member(const cJSON *object, const char *name) {
  const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
  const char *text = cJSON_GetStringValue(item);
  return text ? strdup(text) : NULL;
}

static bool only_space_after(const char *p, const char *end) {
  if (!p) return false;
  for (; p < end; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') return false;
  return true;
}

static k8s_status status_parse(const char *body, size_t body_len) {
  k8s_status st = {0};
  if (!body || body_len == 0 || body_len > STATUS_BODY_PARSE_MAX) return st;
  /* Like Go's json.Unmarshal, bytes after the value make it no Status. */
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(body, body_len, &end, false);
  if (cJSON_IsObject(root) && only_space_after(end, body + body_len)) {
    st.parsed = true;
    st.reason = string_member(root, "reason");
    st.message = string_member(root, "message");
  }
  cJSON_Delete(root);
  return st;
}

static void status_free(k8s_status *st) {
  free(st->reason);
  free(st->message);
}

static bool contains(const char *haystack, size_t len, const char *needle) {
  return haystack && memmem(haystack, len, needle, strlen(needle)) != NULL;
}

/* The text client-go would match patterns against: the Status message, or
 * the raw body when there is none. */
static bool answer_mentions(const k8s_status *st, const char *body,
                            size_t body_len, const char *needle) {
  if (st->message) return contains(st->message, strlen(st->message), needle);
  return contains(body, body_len, needle);
}

static bool etcd_is_busy(const k8s_status *st, const char *body, size_t len) {
  static const char *const patterns[] = {"etcdserver: leader changed",
                                         "etcdserver: request timed out",
                                         "etcdserver: too many requests"};
  for (size_t i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++)
    if (answer_mentions(st, body, len, patterns[i])) return true;
  return false;
}

static aw_api_class classify_conflict(const k8s_status *st, const char *body,
                                      size_t body_len) {
  /* Argo retries a resource-quota update race. */
  if (answer_mentions(st, body, body_len,
                      "Operation cannot be fulfilled on resourcequota"))
    return AW_API_TRANSIENT;
  /* A 409 on create means the object is there, unless the server says it
   * is some other conflict (e.g. a stale resourceVersion). */
  if (!st->reason || strcmp(st->reason, "AlreadyExists") == 0)
    return AW_API_EXISTS;
  return AW_API_PERMANENT;
}

static aw_api_class classify_http(long status, const k8s_status *st,
                                  const char *body, size_t body_len) {
  if (etcd_is_busy(st, body, body_len)) return AW_API_TRANSIENT;
  switch (status) {
    case 401:
      return AW_API_UNAUTHORIZED;
    case 403:
      return answer_mentions(st, body, body_len, "exceeded quota")
                 ? AW_API_TRANSIENT
                 : AW_API_PERMANENT;
    case 404:
      return AW_API_NOT_FOUND;
    case 409:
      return classify_conflict(st, body, body_len);
    case 429:
    case 500:
    case 502:
    case 503:
    case 504:
      return AW_API_TRANSIENT;
    default:
      return AW_API_PERMANENT;
  }
}

aw_api_class aw_api_classify(bool transport_error, bool tls_verify_failed,
                             long status, const char *body, size_t body_len) {
  if (transport_error)
    return tls_verify_failed ? AW_API_PERMANENT : AW_API_TRANSIENT;
  if (status >= 200 && status <= 299) return AW_API_OK;
  if (!body) body_len = 0;
  k8s_status st = status_parse(body, body_len);
  aw_api_class cls = classify_http(status, &st, body, body_len);
  status_free(&st);
  return cls;
}

/* ---- one-line messages -------------------------------------------------- */


/* Appends text as one printable line: control bytes become spaces, bytes
 * that are not UTF-8 become U+FFFD, so a log line or the termination log
 * cannot be split or corrupted by what a server sent. */
static int append_one_line(aw_strbuf *sb, const char *text, size_t len) {
  const unsigned char *s = (const unsigned char *)text;
  int rc = 0;
  for (size_t i = 0; i < len;) {
    size_t n = aw_utf8_char_len(s + i, len - i);
    if (n == 0) {
      rc |= aw_strbuf_appends(sb, "\xEF\xBF\xBD");
      n = 1;
    } else if (n == 1 && (s[i] < 0x20 || s[i] == 0x7F)) {
      rc |= aw_strbuf_appends(sb, " ");
    } else {
      rc |= aw_strbuf_append(sb, s + i, n);
    }
    i += n;
  }
  return rc;
}

/* Cuts surrounding spaces off a line in place. */
static void trim_spaces(aw_strbuf *sb) {
  size_t start = 0;
  while (start < sb->len && sb->data[start] == ' ') start++;
  size_t end = sb->len;
  while (end > start && sb->data[end - 1] == ' ') end--;
  if (start == 0 && end == sb->len) return;
  memmove(sb->data, sb->data + start, end - start);
  sb->len = end - start;
  sb->data[sb->len] = '\0';
}

static int append_status_text(aw_strbuf *sb, const k8s_status *st) {
  const char *reason = st->reason && *st->reason ? st->reason : NULL;
  const char *message = st->message && *st->message ? st->message : NULL;
  int rc = 0;
  if (reason) rc |= append_one_line(sb, reason, strlen(reason));
  if (reason && message) rc |= aw_strbuf_appends(sb, ": ");
  if (message) rc |= append_one_line(sb, message, strlen(message));
  return rc;
}

/* The cut can land inside a run of blanks (a control byte became one), so
 * the end is trimmed again after it: found by fuzz/fuzz_api.c. The line
 * starts with a non-blank (trim_spaces ran), so it never becomes empty. */
static char *cut_line(aw_strbuf *sb, size_t max) {
  if (sb->data) {
    size_t len = aw_utf8_cut(sb->data, sb->len, max);
    while (len > 1 && sb->data[len - 1] == ' ') len--;
    sb->data[len] = '\0';
  }
  return aw_strbuf_take(sb);
}

char *aw_api_status_message(const char *body, size_t body_len) {
  if (!body) body_len = 0;
  k8s_status st = status_parse(body, body_len);
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  int rc = append_status_text(&sb, &st);
  status_free(&st);
  size_t max = STATUS_MESSAGE_MAX;
  if (rc == 0 && sb.len == 0) {
    rc = append_one_line(&sb, body,
                         aw_utf8_cut(body, body_len, BODY_PREFIX_MAX));
    max = SIZE_MAX;
  }
  if (rc == 0) trim_spaces(&sb);
  if (rc != 0 || sb.len == 0) {
    aw_strbuf_free(&sb);
    /* Also the answer when memory ran out: the caller is promised a
     * string, and this one needs no allocation to be meaningful. */
    return strdup(rc != 0 ? "(no message: out of memory)" : "(empty body)");
  }
  return cut_line(&sb, max);
}

int64_t aw_unix_now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void aw_jitter_seed(aw_jitter *j, uint64_t seed) {
  j->state = seed ? seed : 0x9E3779B97F4A7C15ULL;
}

double aw_jitter_next(aw_jitter *j) {
  j->state ^= j->state >> 12;
  j->state ^= j->state << 25;
  j->state ^= j->state >> 27;
  return (double)((j->state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

const aw_backoff_policy aw_policy_calm = {200, 2.0, 30000, 0.5};
const aw_backoff_policy aw_policy_hurried = {50, 2.0, 1000, 0.5};

bool aw_retry_delay(const aw_retry_rules *r, const aw_budget *b, uint64_t now,
                    unsigned failures, const char *retry_after,
                    int64_t now_unix_ms, aw_jitter *j, uint64_t *delay_ms) {
  const aw_backoff_policy *policy = b->active ? r->hurried : r->calm;
  uint64_t delay = aw_backoff_delay(policy, failures ? failures - 1 : 0, aw_jitter_next(j));
  uint64_t asked = 0;
  if (retry_after && aw_parse_retry_after(retry_after, now_unix_ms, &asked) == 0) {
    uint64_t floor = asked < AW_RETRY_AFTER_CAP_MS ? asked : AW_RETRY_AFTER_CAP_MS;
    uint64_t spread = (uint64_t)(aw_jitter_next(j) * (double)(floor / 2 + 1));
    delay = (delay > floor ? delay : floor) + spread;
  }
  if (b->active) {
    uint64_t left = aw_budget_clip(b, now, UINT64_MAX);
    if (left < r->min_attempt_ms * 2) return false;
    if (delay > left - r->min_attempt_ms) delay = left - r->min_attempt_ms;
  }
  *delay_ms = delay;
  return true;
}
