/* An artifact repository, as src/artifacts.c sees it.
 *
 * Each kind (S3, Artifactory) answers the same questions: where does an
 * upload name go (its key), how is a key named in messages and in the report,
 * which credentials does it need, and how is a file put there. artifacts.c
 * holds one store per repository in use (the template's archiveLocation, and
 * an artifact's own Artifactory location) and never asks which kind it is.
 *
 * A store is made from the template and the environment (no I/O), then its
 * credentials are read on the thread pool, then it is connected on the loop,
 * which hands the credentials to the client and wipes them here. Connecting
 * may have to wait for credentials first (S3 with the pod's web identity:
 * STS, see sts.h); that wait can be stopped, and says where it stood, so
 * that artifacts.c reports it without knowing what it was. */
#ifndef ARGOWAIT_STORE_H
#define ARGOWAIT_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/config.h"
#include "argowait/http.h"
#include "argowait/template.h"

typedef struct aw_store aw_store;
typedef struct aw_store_op aw_store_op;

typedef enum {
  AW_STORE_OK = 0,
  AW_STORE_FAILED,    /* message says why */
  AW_STORE_CANCELLED, /* aw_store_cancel */
} aw_store_status;

typedef struct {
  aw_store_status status;
  const char *message; /* names the object (s3://bucket/key, the URL); NULL on OK */
  unsigned attempts;
  uint64_t bytes;
  unsigned parts;      /* S3 multipart parts, else 0 */
} aw_store_result;

typedef void (*aw_store_cb)(const aw_store_result *res, void *arg);

/* The template's archiveLocation as a store. env gives the S3 upload
 * settings and where S3 credentials come from (aw_creds_plan_make; pod_name,
 * which may be NULL, names the STS session). NULL with *why (malloc'd) when
 * it cannot hold artifacts: none configured, a kind that is not supported
 * (the message names it), a missing setting, no usable credential source,
 * bad upload settings. */
aw_store *aw_store_for_archive_location(const aw_archive_location *l, aw_getenv_fn env,
                                        const char *pod_name, char **why);

/* An artifact's own artifactory location (url, and its own credentials when
 * given). NULL with *why (malloc'd) for a bad url. */
aw_store *aw_store_for_own_artifactory(const aw_output_artifact *art, char **why);

void aw_store_free(aw_store *s);

/* The location member's name in a report: "s3", "artifactory". */
const char *aw_store_type(const aw_store *s);
/* Where an upload name goes: "<key prefix>/<name>" (S3) or
 * "<url>/<name>" (Artifactory). For the own location of an artifact, its
 * key is the location itself (upload_name NULL). malloc'd. */
char *aw_store_key(const aw_store *s, const char *upload_name);
/* key + "/" + rel, for the files of a folder. malloc'd. */
char *aw_store_child_key(const aw_store *s, const char *key, const char *rel);
/* "s3://bucket/key", or the URL: for log lines and reasons. malloc'd. */
char *aw_store_where(const aw_store *s, const char *key);
/* The location reported with a saved artifact: {"key": key} or {"url": key}. */
cJSON *aw_store_location(const aw_store *s, const char *key);
/* Whether a folder can be saved as one object per file (S3). Artifactory
 * holds one file per artifact, and Argo cannot read a folder back from it. */
bool aw_store_holds_folders(const aw_store *s);

/* Blocking (thread pool): reads the credentials from the Secret files under
 * cfg's root (and, for S3 with the pod's web identity, its token file).
 * Returns 0, or -1 with *err (malloc'd, naming the file, never its
 * content). */
int aw_store_load_credentials(aw_store *s, const aw_config *cfg, char **err);

typedef enum {
  AW_STORE_CONNECTED = 0,  /* the client is ready; cb never runs */
  AW_STORE_CONNECTING,     /* credentials are being fetched (STS); cb will say */
  AW_STORE_CONNECT_FAILED, /* *err (malloc'd) says why; cb never runs */
} aw_store_connect_status;

/* On the loop: starts the client with the credentials read, then wipes them.
 * When they must be exchanged first (S3 with the pod's web identity, and
 * roleARN), returns CONNECTING and cb runs exactly once from the loop (never
 * inside this call) with OK or FAILED and a message fit for a reason; not
 * after aw_store_connect_stop or aw_store_free. budget must outlive the
 * store. */
aw_store_connect_status aw_store_connect(aw_store *s, uv_loop_t *loop, aw_http *http,
                                         const aw_budget *budget, aw_store_cb cb, void *arg,
                                         char **err);

/* Stops a connect in flight (its cb never runs) and says where it stood, for
 * a reason: "S3 credentials: <cause> while getting them from STS <action>
 * (role, endpoint): <n> attempts, the last: <error>" (*why malloc'd, NULL
 * when out of memory; never a secret). Returns false when none was in
 * flight. */
bool aw_store_connect_stop(aw_store *s, const char *cause, char **why);

/* Work before the first upload (S3 createBucketIfNotPresent). When there is
 * none, returns false and never calls cb. */
bool aw_store_prepare(aw_store *s, aw_store_cb cb, void *arg, aw_store_op **op);

/* Uploads base_dir/rel to key (see aw_s3_put_file / aw_artifactory_put_file;
 * nofollow: no symlink at all on the way). cb runs exactly once, from the
 * loop, never inside this call. NULL when it cannot start. */
aw_store_op *aw_store_put(aw_store *s, const char *key, const char *base_dir, const char *rel,
                          bool nofollow, aw_store_cb cb, void *arg);

/* Stops the operation; cb runs once, with AW_STORE_CANCELLED unless the
 * outcome was already decided. */
void aw_store_cancel(aw_store_op *op);

/* SIGTERM or the reserve: clip attempts in flight (uploads, and a connect's
 * STS calls); now_too wakes sleeping retries at once. */
void aw_store_budget_changed(aw_store *s, bool now_too);

#endif
