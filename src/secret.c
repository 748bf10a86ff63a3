/* Secrets in memory and in messages: see include/argowait/secret.h. */
#include "argowait/secret.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "argowait/strbuf.h"

void aw_secret_free(char *s) {
  if (!s) return;
  explicit_bzero(s, strlen(s));
  free(s);
}

static bool scrubbable(const char *secret) {
  return secret && strlen(secret) >= AW_SECRET_SCRUB_MIN;
}

/* The length of the longest secret that starts at p, 0 for none. */
static size_t secret_at(const char *p, const char *const *secrets, size_t count) {
  size_t best = 0;
  for (size_t i = 0; i < count; i++) {
    if (!scrubbable(secrets[i])) continue;
    size_t n = strlen(secrets[i]);
    if (n > best && strncmp(p, secrets[i], n) == 0) best = n;
  }
  return best;
}

static bool holds_secret(const char *msg, const char *const *secrets, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (scrubbable(secrets[i]) && strstr(msg, secrets[i])) return true;
  return false;
}

int aw_secret_scrub(char **msg, const char *const *secrets, size_t count) {
  if (!*msg || !holds_secret(*msg, secrets, count)) return 0;
  aw_strbuf out;
  aw_strbuf_init(&out);
  int rc = 0;
  for (const char *p = *msg; *p && rc == 0;) {
    size_t n = secret_at(p, secrets, count);
    rc = n ? aw_strbuf_appends(&out, "***") : aw_strbuf_append(&out, p, 1);
    p += n ? n : 1;
  }
  aw_secret_free(*msg);
  *msg = NULL;
  if (rc != 0) {
    if (out.data) explicit_bzero(out.data, out.len);
    aw_strbuf_free(&out);
    return -1;
  }
  *msg = aw_strbuf_take(&out);
  return *msg ? 0 : -1;
}
