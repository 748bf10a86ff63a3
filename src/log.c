#include "argowait/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "argowait/jsonstr.h"
#include "argowait/strbuf.h"

static aw_log_level g_min_level = AW_LOG_INFO;
static aw_log_format g_format = AW_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warning", "error"};

/* logrus.ParseLevel and Argo's --log-format lower-case their argument, so
 * "INFO" and "JSON" work there; ASCII-only, whatever the locale. */
static bool ascii_equal_fold(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
    char cb = *b >= 'A' && *b <= 'Z' ? (char)(*b - 'A' + 'a') : *b;
    if (ca != cb) return false;
  }
  return *a == *b;
}

int aw_log_parse_level(const char *name, aw_log_level *out) {
  if (!name) return -1;
  static const struct {
    const char *name;
    aw_log_level level;
  } table[] = {{"debug", AW_LOG_DEBUG}, {"trace", AW_LOG_DEBUG},
               {"info", AW_LOG_INFO},   {"warn", AW_LOG_WARN},
               {"warning", AW_LOG_WARN}, {"error", AW_LOG_ERROR},
               {"fatal", AW_LOG_ERROR}, {"panic", AW_LOG_ERROR}};
  for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
    if (ascii_equal_fold(name, table[i].name)) {
      *out = table[i].level;
      return 0;
    }
  }
  return -1;
}

int aw_log_parse_format(const char *name, aw_log_format *out) {
  if (!name) return -1;
  if (ascii_equal_fold(name, "text")) {
    *out = AW_LOG_TEXT;
  } else if (ascii_equal_fold(name, "json")) {
    *out = AW_LOG_JSON;
  } else {
    return -1;
  }
  return 0;
}

void aw_log_setup(aw_log_level min_level, aw_log_format format) {
  g_min_level = min_level;
  g_format = format;
}

bool aw_log_enabled(aw_log_level level) { return level >= g_min_level; }

/* logrus quotes values with Go's strconv.Quote; JSON escaping gives the same
 * for everything a log message holds (quotes, backslashes, control bytes). */
char *aw_log_format_line(aw_log_format format, aw_log_level level,
                         const char *timestamp, const char *msg) {
  /* An enum can hold any int: an unknown level must not index past the
   * table, and it is shown at the loudest level rather than lost. */
  if ((unsigned)level > AW_LOG_ERROR) level = AW_LOG_ERROR;
  char *quoted = aw_json_quote(msg, strlen(msg));
  if (!quoted) return NULL;
  aw_strbuf sb;
  aw_strbuf_init(&sb);
  int rc;
  if (format == AW_LOG_JSON) {
    rc = aw_strbuf_appendf(&sb,
                           "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":%s}\n",
                           timestamp, level_names[level], quoted);
  } else {
    rc = aw_strbuf_appendf(&sb, "time=\"%s\" level=%s msg=%s\n", timestamp,
                           level_names[level], quoted);
  }
  free(quoted);
  /* The promise is a whole line or nothing. */
  if (rc != 0) {
    aw_strbuf_free(&sb);
    return NULL;
  }
  return aw_strbuf_take(&sb);
}

static void format_now(char *out, size_t size) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, size, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

void aw_log(aw_log_level level, const char *fmt, ...) {
  if (!aw_log_enabled(level)) return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  char ts[48];
  format_now(ts, sizeof(ts));
  char *line = aw_log_format_line(g_format, level, ts, msg);
  if (!line) return;
  /* One write per line keeps lines whole when a pool thread logs too. */
  size_t len = strlen(line);
  ssize_t n = write(STDERR_FILENO, line, len);
  (void)n;
  free(line);
}
