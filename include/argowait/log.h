/* Log lines on stderr in Argo's executor style.
 *
 * text: time="2026-11-22T14:39:00.123Z" level=info msg="placeholder written"
 * json: {"time":"2026-11-22T14:39:00.123Z","level":"info","msg":"placeholder written"}
 *
 * Callers never pass a secret: the module has no way to know one, so the
 * rule is kept at the call sites (tokens and keys are never formatted). */
#ifndef ARGOWAIT_LOG_H
#define ARGOWAIT_LOG_H

#include <stdbool.h>

typedef enum {
  AW_LOG_DEBUG = 0,
  AW_LOG_INFO = 1,
  AW_LOG_WARN = 2,
  AW_LOG_ERROR = 3,
} aw_log_level;

typedef enum { AW_LOG_TEXT = 0, AW_LOG_JSON = 1 } aw_log_format;

/* Parses "debug", "info", "warn"/"warning", "error" (also "fatal", "panic"
 * as error). Returns 0 on success, -1 when the name is unknown. */
int aw_log_parse_level(const char *name, aw_log_level *out);
/* Parses "text" or "json". Returns 0 on success, -1 otherwise. */
int aw_log_parse_format(const char *name, aw_log_format *out);

void aw_log_setup(aw_log_level min_level, aw_log_format format);
bool aw_log_enabled(aw_log_level level);

void aw_log(aw_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define aw_debug(...) aw_log(AW_LOG_DEBUG, __VA_ARGS__)
#define aw_info(...) aw_log(AW_LOG_INFO, __VA_ARGS__)
#define aw_warn(...) aw_log(AW_LOG_WARN, __VA_ARGS__)
#define aw_error(...) aw_log(AW_LOG_ERROR, __VA_ARGS__)

/* Formats one line without writing it (for tests). Returns a malloc'd,
 * newline-terminated string. */
char *aw_log_format_line(aw_log_format format, aw_log_level level,
                         const char *timestamp, const char *msg);

#endif
