#include "argowait/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "civil.h"

/* A bad value is quoted in its reason, but a template-sized value would
 * drown the termination log, so only its start is shown. */
#define SHOWN_VALUE_MAX 64

#define NS_PER_MS 1000000LL
/* Go keeps durations as uint64 magnitudes up to 1<<63, so that the most
 * negative int64 is still reachable. */
#define DURATION_LIMIT ((uint64_t)1 << 63)

/* ---- small parsers ------------------------------------------------------ */

static bool is_ascii_digit(char c) { return c >= '0' && c <= '9'; }

static bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

static const char *skip_ascii_space(const char *p) {
  while (is_ascii_space(*p)) p++;
  return p;
}

int aw_parse_int(const char *s, int64_t min, int64_t max, int64_t *out) {
  if (!s) return -1;
  const char *p = skip_ascii_space(s);
  bool negative = false;
  if (*p == '+' || *p == '-') negative = *p++ == '-';
  if (!is_ascii_digit(*p)) return -1;
  uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  uint64_t magnitude = 0;
  for (; is_ascii_digit(*p); p++) {
    uint64_t digit = (uint64_t)(*p - '0');
    if (magnitude > (limit - digit) / 10) return -1;
    magnitude = magnitude * 10 + digit;
  }
  if (*skip_ascii_space(p) != '\0') return -1;
  int64_t value;
  if (!negative)
    value = (int64_t)magnitude;
  else if (magnitude == (uint64_t)INT64_MAX + 1)
    value = INT64_MIN;
  else
    value = -(int64_t)magnitude;
  if (value < min || value > max) return -1;
  *out = value;
  return 0;
}

int aw_parse_bool(const char *s, bool *out) {
  static const char *const truths[] = {"1", "t", "T", "TRUE", "true", "True"};
  static const char *const falsehoods[] = {"0",     "f",     "F",
                                           "FALSE", "false", "False"};
  if (!s) return -1;
  for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
    if (strcmp(s, truths[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcmp(s, falsehoods[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

/* ---- Go durations ------------------------------------------------------- */

typedef struct {
  const char *name;
  uint64_t ns;
} duration_unit;

static uint64_t duration_unit_ns(const char *name, size_t len) {
  static const duration_unit units[] = {
      {"ns", 1},
      {"us", 1000},
      {"\xC2\xB5s", 1000}, /* U+00B5 micro sign */
      {"\xCE\xBCs", 1000}, /* U+03BC Greek small letter mu */
      {"ms", 1000000},
      {"s", 1000000000},
      {"m", 60ULL * 1000000000},
      {"h", 3600ULL * 1000000000},
  };
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strlen(units[i].name) == len && memcmp(units[i].name, name, len) == 0)
      return units[i].ns;
  }
  return 0;
}

/* The integer part of one term; fails past 1<<63 as Go does. */
static int duration_leading_int(const char **pp, uint64_t *out) {
  const char *p = *pp;
  uint64_t value = 0;
  for (; is_ascii_digit(*p); p++) {
    if (value > DURATION_LIMIT / 10) return -1;
    value = value * 10 + (uint64_t)(*p - '0');
    if (value > DURATION_LIMIT) return -1;
  }
  *pp = p;
  *out = value;
  return 0;
}

/* The fraction digits of one term as value/scale. Digits beyond int64
 * precision are consumed but ignored, as in Go. */
static void duration_leading_fraction(const char **pp, uint64_t *value,
                                      double *scale) {
  const char *p = *pp;
  bool saturated = false;
  *value = 0;
  *scale = 1;
  for (; is_ascii_digit(*p); p++) {
    if (saturated) continue;
    if (*value > (uint64_t)INT64_MAX / 10) {
      saturated = true;
      continue;
    }
    *value = *value * 10 + (uint64_t)(*p - '0');
    *scale *= 10;
  }
  *pp = p;
}

/* One "<number><unit>" term, e.g. "1.5h", as a magnitude in ns. */
static int duration_term(const char **pp, uint64_t *out) {
  const char *p = *pp;
  if (!is_ascii_digit(*p) && *p != '.') return -1;
  const char *start = p;
  uint64_t whole;
  if (duration_leading_int(&p, &whole) != 0) return -1;
  bool has_whole = p != start;
  uint64_t fraction = 0;
  double scale = 1;
  bool has_fraction = false;
  if (*p == '.') {
    const char *fraction_start = ++p;
    duration_leading_fraction(&p, &fraction, &scale);
    has_fraction = p != fraction_start;
  }
  if (!has_whole && !has_fraction) return -1;
  const char *unit_start = p;
  while (*p && *p != '.' && !is_ascii_digit(*p)) p++;
  uint64_t unit = duration_unit_ns(unit_start, (size_t)(p - unit_start));
  if (unit == 0) return -1;
  if (whole > DURATION_LIMIT / unit) return -1;
  uint64_t value = whole * unit;
  /* fraction/scale < 1, so this part stays below one unit (< 2^42). */
  value += (uint64_t)((double)fraction * ((double)unit / scale));
  if (value > DURATION_LIMIT) return -1;
  *pp = p;
  *out = value;
  return 0;
}

int aw_parse_go_duration(const char *s, int64_t *out_ns) {
  if (!s) return -1;
  const char *p = s;
  bool negative = false;
  if (*p == '+' || *p == '-') negative = *p++ == '-';
  if (strcmp(p, "0") == 0) {
    *out_ns = 0;
    return 0;
  }
  if (*p == '\0') return -1;
  uint64_t total = 0;
  while (*p) {
    uint64_t term;
    if (duration_term(&p, &term) != 0) return -1;
    if (term > DURATION_LIMIT - total) return -1;
    total += term;
  }
  if (negative) {
    *out_ns = total == DURATION_LIMIT ? INT64_MIN : -(int64_t)total;
  } else {
    if (total > (uint64_t)INT64_MAX) return -1;
    *out_ns = (int64_t)total;
  }
  return 0;
}

/* ---- RFC 3339 ----------------------------------------------------------- */

typedef struct {
  int year, month, day, hour, minute, second;
} civil_time;

/* "2006-01-02T15:04:05", the fixed-width head every RFC 3339 time has. */
static bool rfc3339_head(const char *s, civil_time *t) {
  return aw_civil_digits(s, 4, &t->year) && s[4] == '-' &&
         aw_civil_digits(s + 5, 2, &t->month) && s[7] == '-' &&
         aw_civil_digits(s + 8, 2, &t->day) && s[10] == 'T' &&
         aw_civil_digits(s + 11, 2, &t->hour) && s[13] == ':' &&
         aw_civil_digits(s + 14, 2, &t->minute) && s[16] == ':' &&
         aw_civil_digits(s + 17, 2, &t->second);
}

static bool civil_time_valid(const civil_time *t) {
  /* A leap second (60) is rejected, as Go's RFC 3339 parser does. */
  return t->month >= 1 && t->month <= 12 && t->day >= 1 &&
         t->day <= aw_civil_days_in_month(t->year, t->month) && t->hour <= 23 &&
         t->minute <= 59 && t->second <= 59;
}

/* ".123456789": any number of digits, milliseconds truncated. */
static const char *rfc3339_fraction(const char *p, int64_t *ms) {
  *ms = 0;
  if (*p != '.') return p;
  p++;
  if (!is_ascii_digit(*p)) return NULL;
  int digits = 0;
  for (; is_ascii_digit(*p); p++, digits++)
    if (digits < 3) *ms = *ms * 10 + (*p - '0');
  for (; digits < 3; digits++) *ms *= 10;
  return p;
}

/* "Z" or "+hh:mm"/"-hh:mm" ending the string; offset east of UTC. */
static bool rfc3339_offset(const char *p, int64_t *offset_s) {
  if (strcmp(p, "Z") == 0) {
    *offset_s = 0;
    return true;
  }
  int hours, minutes;
  if ((p[0] != '+' && p[0] != '-') || !aw_civil_digits(p + 1, 2, &hours) ||
      p[3] != ':' || !aw_civil_digits(p + 4, 2, &minutes) || p[6] != '\0' ||
      hours > 23 || minutes > 59)
    return false;
  *offset_s = (int64_t)(hours * 3600 + minutes * 60) * (p[0] == '-' ? -1 : 1);
  return true;
}

int aw_parse_rfc3339(const char *s, int64_t *out_unix_ms) {
  if (!s) return -1;
  civil_time t;
  if (!rfc3339_head(s, &t) || !civil_time_valid(&t)) return -1;
  int64_t fraction_ms;
  const char *p = rfc3339_fraction(s + 19, &fraction_ms);
  int64_t offset_s;
  if (!p || !rfc3339_offset(p, &offset_s)) return -1;
  int64_t days = aw_civil_days_from_date(t.year, t.month, t.day);
  int64_t seconds =
      days * 86400 + t.hour * 3600 + t.minute * 60 + t.second - offset_s;
  *out_unix_ms = seconds * 1000 + fraction_ms;
  return 0;
}

/* ---- the reserve -------------------------------------------------------- */

static int64_t default_reserve_ms(int64_t grace_ms) {
  int64_t reserve = grace_ms / 5;
  if (reserve < AW_RESERVE_MIN_MS) reserve = AW_RESERVE_MIN_MS;
  if (reserve > AW_RESERVE_MAX_MS) reserve = AW_RESERVE_MAX_MS;
  return reserve;
}

/* On -1, *out still gets the default, so a caller can note the bad text
 * and go on. */
int aw_config_reserve_ms(int64_t grace_ms, const char *text, int64_t *out) {
  int64_t half = grace_ms > 0 ? grace_ms / 2 : 0;
  int64_t reserve = default_reserve_ms(grace_ms);
  int rc = 0;
  if (text) {
    int64_t explicit_ms;
    if (aw_parse_int(text, 0, INT64_MAX, &explicit_ms) == 0)
      reserve = explicit_ms;
    else
      rc = -1;
  }
  *out = reserve < half ? reserve : half;
  return rc;
}

/* ---- paths and small accessors ------------------------------------------ */

char *aw_config_path(const aw_config *cfg, const char *fixed,
                     const char *rest) {
  const char *root = cfg && cfg->root ? cfg->root : "";
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  int rc = aw_strbuf_appends(&sb, root);
  rc |= aw_strbuf_appends(&sb, fixed ? fixed : "");
  if (rest) {
    rc |= aw_strbuf_appends(&sb, "/");
    rc |= aw_strbuf_appends(&sb, rest);
  }
  if (rc != 0) {
    aw_strbuf_free(&sb);
    return NULL;
  }
  return aw_strbuf_take(&sb);
}

bool aw_config_has_identity(const aw_config *cfg) {
  return cfg->node_id && *cfg->node_id && cfg->workflow_name &&
         *cfg->workflow_name;
}

bool aw_config_progress_enabled(const aw_config *cfg) {
  return cfg->progress_patch_tick_ms > 0 && cfg->progress_file_tick_ms > 0;
}

void aw_config_free(aw_config *cfg) {
  if (!cfg) return;
  char **owned[] = {
      &cfg->root,          &cfg->pod_name,      &cfg->pod_uid,
      &cfg->workflow_name, &cfg->workflow_uid,  &cfg->node_id,
      &cfg->instance_id,   &cfg->namespace_env, &cfg->progress_file,
      &cfg->template_json, &cfg->template_path, &cfg->api_host,
      &cfg->api_port};
  for (size_t i = 0; i < sizeof(owned) / sizeof(owned[0]); i++) {
    free(*owned[i]);
    *owned[i] = NULL;
  }
}

/* ---- loading ------------------------------------------------------------ */

typedef struct {
  aw_getenv_fn getenv_fn;
  aw_reasons *errs;
  bool failed; /* not errs->count: an add can fail for want of memory */
} env_loader;

static void loader_fail(env_loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void loader_fail(env_loader *ld, const char *fmt, ...) {
  ld->failed = true;
  if (!ld->errs) return;
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(ld->errs, fmt, ap);
  va_end(ap);
}

/* NULL for unset and for empty: Argo treats both as "not given". */
static const char *env_get(env_loader *ld, const char *name) {
  const char *value = ld->getenv_fn ? ld->getenv_fn(name) : NULL;
  return value && *value ? value : NULL;
}

/* The start of a bad value for a reason, "..." marking a cut. */
static void shown_value(const char *value, char out[SHOWN_VALUE_MAX + 4]) {
  size_t len = strlen(value);
  size_t cut = aw_utf8_cut(value, len, SHOWN_VALUE_MAX);
  memcpy(out, value, cut);
  strcpy(out + cut, cut < len ? "..." : "");
}

static void fail_unparsable(env_loader *ld, const char *name, const char *value,
                            const char *as_what) {
  char shown[SHOWN_VALUE_MAX + 4];
  shown_value(value, shown);
  loader_fail(ld, "%s: cannot parse \"%s\" as %s", name, shown, as_what);
}

static void fail_invalid(env_loader *ld, const char *name, const char *value,
                         const char *why) {
  char shown[SHOWN_VALUE_MAX + 4];
  shown_value(value, shown);
  loader_fail(ld, "%s: \"%s\" %s", name, shown, why);
}

static char *copy_or_fail(env_loader *ld, const char *name, const char *value) {
  char *copy = strdup(value);
  if (!copy) loader_fail(ld, "%s: out of memory", name);
  return copy;
}

static char *load_optional(env_loader *ld, const char *name) {
  const char *value = env_get(ld, name);
  return value ? copy_or_fail(ld, name, value) : NULL;
}

static char *load_required(env_loader *ld, const char *name) {
  const char *value = env_get(ld, name);
  if (value) return copy_or_fail(ld, name, value);
  const char *raw = ld->getenv_fn ? ld->getenv_fn(name) : NULL;
  loader_fail(ld, "%s: required, but %s", name, raw ? "empty" : "not set");
  return NULL;
}

static char *path_or_fail(env_loader *ld, const aw_config *cfg,
                          const char *name, const char *fixed) {
  char *path = aw_config_path(cfg, fixed, NULL);
  if (!path) loader_fail(ld, "%s: out of memory", name);
  return path;
}

static void load_root(env_loader *ld, aw_config *cfg) {
  const char *value = env_get(ld, "ARGOWAIT_ROOT");
  cfg->root = copy_or_fail(ld, "ARGOWAIT_ROOT", value ? value : "");
  if (!cfg->root) return;
  /* Fixed paths start with '/', so a trailing one would only double it. */
  size_t len = strlen(cfg->root);
  while (len > 0 && cfg->root[len - 1] == '/') cfg->root[--len] = '\0';
}

static void load_identity(env_loader *ld, aw_config *cfg) {
  cfg->pod_name = load_required(ld, "ARGO_POD_NAME");
  cfg->pod_uid = load_optional(ld, "ARGO_POD_UID");
  cfg->workflow_name = load_required(ld, "ARGO_WORKFLOW_NAME");
  cfg->workflow_uid = load_optional(ld, "ARGO_WORKFLOW_UID");
  cfg->node_id = load_required(ld, "ARGO_NODE_ID");
  cfg->instance_id = load_optional(ld, "ARGO_INSTANCE_ID");
  cfg->namespace_env = load_optional(ld, "POD_NAMESPACE");
}

static void load_script_output(env_loader *ld, aw_config *cfg) {
  const char *value = env_get(ld, "ARGO_INCLUDE_SCRIPT_OUTPUT");
  cfg->include_script_output = false;
  if (value && aw_parse_bool(value, &cfg->include_script_output) != 0)
    fail_unparsable(ld, "ARGO_INCLUDE_SCRIPT_OUTPUT", value,
                    "a boolean (true or false)");
}

static void load_deadline(env_loader *ld, aw_config *cfg) {
  const char *value = env_get(ld, "ARGO_DEADLINE");
  cfg->has_deadline = false;
  cfg->deadline_unix_ms = 0;
  if (!value) return;
  int64_t ms;
  if (aw_parse_rfc3339(value, &ms) != 0) {
    fail_unparsable(ld, "ARGO_DEADLINE", value, "an RFC 3339 time");
    return;
  }
  /* The controller writes Go's zero time when there is no deadline. */
  if (ms == AW_RFC3339_ZERO_MS) return;
  cfg->has_deadline = true;
  cfg->deadline_unix_ms = ms;
}

/* Rounds up, so that a positive sub-millisecond tick stays non-zero (and
 * progress stays on). */
static int64_t ns_to_ms_rounding_up(int64_t ns) {
  return ns / NS_PER_MS + (ns % NS_PER_MS > 0 ? 1 : 0);
}

static int64_t load_tick_ms(env_loader *ld, const char *name) {
  const char *value = env_get(ld, name);
  if (!value) return 0;
  int64_t ns;
  if (aw_parse_go_duration(value, &ns) != 0) {
    fail_unparsable(ld, name, value, "a Go duration (e.g. \"1m0s\", \"3s\")");
    return 0;
  }
  if (ns < 0) {
    fail_invalid(ld, name, value, "is negative");
    return 0;
  }
  return ns_to_ms_rounding_up(ns);
}

static void load_progress(env_loader *ld, aw_config *cfg) {
  const char *value = env_get(ld, "ARGO_PROGRESS_FILE");
  /* Relative to root a relative path would glue onto the root's last
   * name, so only an absolute one is taken. */
  if (value && value[0] != '/') {
    fail_invalid(ld, "ARGO_PROGRESS_FILE", value, "is not an absolute path");
    value = NULL;
  }
  cfg->progress_file = path_or_fail(ld, cfg, "ARGO_PROGRESS_FILE",
                                    value ? value : AW_PATH_PROGRESS);
  cfg->progress_patch_tick_ms =
      load_tick_ms(ld, "ARGO_PROGRESS_PATCH_TICK_DURATION");
  cfg->progress_file_tick_ms =
      load_tick_ms(ld, "ARGO_PROGRESS_FILE_TICK_DURATION");
}

static void load_grace(env_loader *ld, aw_config *cfg) {
  const char *name = "ARGO_TERMINATION_GRACE_PERIOD_SECONDS";
  const char *value = env_get(ld, name);
  cfg->grace_ms = AW_DEFAULT_GRACE_MS;
  if (!value) return;
  int64_t seconds;
  if (aw_parse_int(value, INT64_MIN, INT64_MAX, &seconds) != 0) {
    fail_unparsable(ld, name, value, "an integer number of seconds");
    return;
  }
  if (seconds > INT64_MAX / 1000) {
    fail_invalid(ld, name, value, "is too large");
    return;
  }
  /* Like Argo, zero or less means "not set". */
  if (seconds > 0) cfg->grace_ms = seconds * 1000;
}

static void load_reserve(env_loader *ld, aw_config *cfg) {
  const char *name = "ARGOWAIT_FINALIZE_RESERVE_MS";
  const char *value = env_get(ld, name);
  if (aw_config_reserve_ms(cfg->grace_ms, value, &cfg->reserve_ms) != 0)
    fail_unparsable(ld, name, value,
                    "a non-negative integer number of milliseconds");
}

static void load_template(env_loader *ld, aw_config *cfg) {
  const char *value = env_get(ld, "ARGO_TEMPLATE");
  if (!value) {
    cfg->template_path =
        path_or_fail(ld, cfg, "ARGO_TEMPLATE", AW_PATH_TEMPLATE);
  } else if (strcmp(value, "offloaded") == 0) {
    cfg->template_path =
        path_or_fail(ld, cfg, "ARGO_TEMPLATE", AW_PATH_OFFLOADED_TEMPLATE);
  } else {
    cfg->template_json = copy_or_fail(ld, "ARGO_TEMPLATE", value);
  }
}

/* Letters, digits and the punctuation of DNS names and IP addresses (with
 * an IPv6 zone): nothing that could end the authority part of a URL. */
static bool is_plain_host(const char *host, size_t len) {
  if (len == 0) return false;
  for (size_t i = 0; i < len; i++) {
    char c = host[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              is_ascii_digit(c) || c == '.' || c == '-' || c == ':' ||
              c == '%' || c == '_';
    if (!ok) return false;
  }
  return true;
}

static void load_api_host(env_loader *ld, aw_config *cfg) {
  const char *name = "KUBERNETES_SERVICE_HOST";
  const char *value = env_get(ld, name);
  /* Unset is not an error here: with --kubeconfig the server comes from the
   * file. The executor requires it for the in-cluster configuration. */
  if (!value) return;
  /* Kept bare: the URL builder adds brackets around an IPv6 address. */
  const char *host = value;
  size_t len = strlen(value);
  if (len >= 2 && value[0] == '[' && value[len - 1] == ']') {
    host++;
    len -= 2;
  }
  if (!is_plain_host(host, len)) {
    fail_invalid(ld, name, value, "is not a host name or IP address");
    return;
  }
  cfg->api_host = strndup(host, len);
  if (!cfg->api_host) loader_fail(ld, "%s: out of memory", name);
}

static void load_api_port(env_loader *ld, aw_config *cfg) {
  const char *name = "KUBERNETES_SERVICE_PORT";
  const char *value = env_get(ld, name);
  if (!value) return;
  int64_t port;
  if (aw_parse_int(value, 1, 65535, &port) != 0) {
    fail_invalid(ld, name, value, "is not a port number (1-65535)");
    return;
  }
  /* Stored normalized (no spaces, no sign): it goes into a URL. */
  char text[8];
  snprintf(text, sizeof(text), "%d", (int)port);
  cfg->api_port = copy_or_fail(ld, name, text);
}

int aw_config_load(aw_config *cfg, aw_getenv_fn getenv_fn, aw_reasons *errs) {
  memset(cfg, 0, sizeof(*cfg));
  env_loader ld = {.getenv_fn = getenv_fn, .errs = errs, .failed = false};
  /* Root first: the paths below are built on it. */
  load_root(&ld, cfg);
  load_identity(&ld, cfg);
  load_script_output(&ld, cfg);
  load_deadline(&ld, cfg);
  load_progress(&ld, cfg);
  load_grace(&ld, cfg);
  load_reserve(&ld, cfg);
  load_template(&ld, cfg);
  load_api_host(&ld, cfg);
  load_api_port(&ld, cfg);
  return ld.failed ? -1 : 0;
}
