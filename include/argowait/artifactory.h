/* An Artifactory client on the one loop (aw_http), for artifact uploads.
 *
 * An upload is one HTTP PUT of the file's bytes to the artifact's URL with
 * basic authentication, as Argo's driver does. The file is streamed from disk
 * (aw_filestream): memory does not grow with its size. TLS is always
 * verified, against $SSL_CERT_FILE when set (where Go's HTTP client, and so
 * Argo's driver, looks for a private CA), else the system's store.
 *
 * Transient failures (connection errors, timeouts, 408, 429, 5xx) are
 * retried with capped, jittered backoff for as long as it takes until the
 * budget is active; then each attempt and sleep is clipped to the time left
 * and the upload gives up when too little is left. Other 4xx answers (401 for
 * a wrong password), TLS verification failures and unreadable files are
 * permanent. Messages name the URL (which never holds credentials: see
 * aw_artifactory_check_url) and never the username or password. */
#ifndef ARGOWAIT_ARTIFACTORY_H
#define ARGOWAIT_ARTIFACTORY_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/http.h"

#define AW_ARTIFACTORY_URL_MAX 4096u

typedef struct aw_artifactory aw_artifactory;
typedef struct aw_artifactory_op aw_artifactory_op;

typedef struct {
  const char *username;    /* copied, wiped on free; NULL: no authentication */
  const char *password;    /* copied, wiped on free */
  const char *ca_file;     /* NULL: the system's store */
  const char *user_agent;
  const aw_budget *budget; /* the executor's; read at every step; required */
} aw_artifactory_config;

typedef enum {
  AW_ARTIFACTORY_OK = 0,
  AW_ARTIFACTORY_TRANSIENT, /* still failing when the budget ran out */
  AW_ARTIFACTORY_PERMANENT, /* a 4xx answer, TLS failure, unreadable file */
  AW_ARTIFACTORY_CANCELLED, /* aw_artifactory_cancel */
} aw_artifactory_status;

typedef struct {
  aw_artifactory_status status;
  long http_status;    /* of the answer that decided, 0 for none */
  const char *message; /* "<url>: HTTP 401: Bad credentials", NULL on OK */
  unsigned attempts;
  uint64_t bytes;      /* the file's size */
} aw_artifactory_result;

typedef void (*aw_artifactory_cb)(const aw_artifactory_result *res, void *arg);

/* Checks a URL before anything is sent to it: http or https, a host, no
 * user or password in it (credentials come from Secrets, and the URL is
 * logged and reported), no query or fragment (an upload name is appended to
 * the path), printable ASCII, at most AW_ARTIFACTORY_URL_MAX bytes.
 * Returns 0, or -1 with *why (a static string). Pure. */
int aw_artifactory_check_url(const char *url, const char **why);

/* base (checked) + "/" + name, with the trailing slashes of base dropped and
 * name percent-encoded as Go's url package encodes a path ('/' is kept as
 * the separator). Returns malloc'd, or NULL when out of memory. Pure. */
char *aw_artifactory_join_url(const char *base, const char *name);

/* Copies the configuration. Returns NULL and sets *err (malloc'd) when it is
 * incomplete. */
aw_artifactory *aw_artifactory_new(uv_loop_t *loop, aw_http *http,
                                   const aw_artifactory_config *cfg, char **err);
/* Stops every upload at once (no callbacks) and frees what it can; the rest
 * goes when pending pool jobs return, so the loop must run on until then. */
void aw_artifactory_free(aw_artifactory *a);

/* PUTs base_dir/rel to url (checked with aw_artifactory_check_url). The file
 * is opened beneath base_dir on a pool thread (aw_open_beneath; with
 * nofollow, aw_open_beneath_walk: no symlink at all). cb runs exactly once,
 * from the loop, never inside this call. NULL when it cannot start. */
aw_artifactory_op *aw_artifactory_put_file(aw_artifactory *a, const char *url,
                                           const char *base_dir, const char *rel, bool nofollow,
                                           aw_artifactory_cb cb, void *arg);

/* Stops the upload; cb then runs once with AW_ARTIFACTORY_CANCELLED (or with
 * the result, if it had already been decided). Never calls cb from inside. */
void aw_artifactory_cancel(aw_artifactory_op *op);

/* The budget changed (SIGTERM, the reserve): clip attempts in flight and,
 * when now_too, wake sleeping retries at once. */
void aw_artifactory_budget_changed(aw_artifactory *a, bool now_too);

typedef struct {
  unsigned attempts;
  unsigned retries;
  uint64_t buffer_peak; /* the most file buffer bytes one upload held */
} aw_artifactory_stats;
aw_artifactory_stats aw_artifactory_get_stats(const aw_artifactory *a);

#endif
