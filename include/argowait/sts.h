/* Temporary S3 credentials from AWS STS: the pod's web identity (EKS IRSA)
 * and, chained on it, an archive location's roleARN.
 *
 * Which credentials an archive location uses follows Argo's S3 driver:
 * static keys from Secrets when both are set (roleARN is then ignored, as in
 * Argo); else roleARN, assumed with the SDK chain's credentials; else the SDK
 * chain (useSDKCreds) or the pod's identity. Of the SDK chain only the web
 * identity is supported (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, what
 * the EKS pod identity webhook injects); keys in the environment, shared
 * config files, ECS and instance metadata are reported as unsupported.
 *
 * AssumeRoleWithWebIdentity is an unsigned POST; AssumeRole is signed with
 * SigV4 (curl's CURLOPT_AWS_SIGV4, service "sts"). Both run on the loop
 * through aw_http and retry transient failures (transport errors, 429, 5xx,
 * Throttling, IDPCommunicationError, ...) the way src/s3.c does: without
 * limit before SIGTERM, then clipped to the budget. Everything else is
 * permanent. Messages name STS, the action, the role ARN, the endpoint and
 * the STS error code; never the token, a key or a session token.
 *
 * The answer is parsed by a small strict XML reader: bounded input, depth
 * and field sizes, the five predefined entities and character references,
 * no DOCTYPE, no CDATA, valid UTF-8 only, one root, matching tags, no
 * duplicate field. */
#ifndef ARGOWAIT_STS_H
#define ARGOWAIT_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "argowait/backoff.h"
#include "argowait/config.h"
#include "argowait/http.h"
#include "argowait/safefile.h"
#include "argowait/template.h"

#define AW_STS_ANSWER_MAX (64u * 1024u)   /* a bigger answer is malformed */
#define AW_STS_TOKEN_FILE_CAP (64u * 1024u)
#define AW_STS_MAX_DEPTH 16
#define AW_STS_VERSION "2011-06-15"

/* ---- the answer (pure) ---- */

typedef enum {
  AW_STS_ANSWER_MALFORMED = 0, /* not a well-formed answer we know: why says so */
  AW_STS_ANSWER_CREDENTIALS,   /* <ActionResponse><ActionResult><Credentials> */
  AW_STS_ANSWER_ERROR,         /* <ErrorResponse>[<Errors>]<Error><Code> */
} aw_sts_answer_kind;

typedef struct {
  aw_sts_answer_kind kind;
  /* CREDENTIALS: each non-empty printable ASCII; wiped on free. */
  char *access_key_id, *secret_access_key, *session_token;
  char *expiration;          /* as sent, NULL when absent */
  int64_t expiration_unix_ms; /* valid when expiration is set */
  /* ERROR: code is [A-Za-z0-9._-]+; message one printable line, cut. */
  char *code, *message;
  const char *why;           /* MALFORMED: a static description */
} aw_sts_answer;

/* Parses an STS answer to `action` (e.g. "AssumeRoleWithWebIdentity"). Never
 * fails otherwise than by kind MALFORMED (out of memory included). */
void aw_sts_parse_answer(const char *body, size_t len, const char *action, aw_sts_answer *out);
void aw_sts_answer_free(aw_sts_answer *a);

/* ---- where STS is (pure) ---- */

typedef struct {
  char *url;            /* scheme://host[:port]/path, ends with '/' when no path */
  char *signing_region; /* for SigV4 (AssumeRole) */
  const char *source;   /* which setting chose it, for messages */
} aw_sts_endpoint;

/* AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL (http:// only when written so),
 * else https://sts.<region>.amazonaws.com[.cn]/ with the region from
 * AWS_REGION, AWS_DEFAULT_REGION or location_region (the global endpoint for
 * the legacy regions when AWS_STS_REGIONAL_ENDPOINTS=legacy), else the global
 * https://sts.amazonaws.com/. Returns 0, or -1 with *err (malloc'd) naming
 * the bad variable. */
int aw_sts_endpoint_choose(aw_getenv_fn env, const char *location_region, aw_sts_endpoint *out,
                           char **err);
void aw_sts_endpoint_free(aw_sts_endpoint *e);

/* ---- what an archive location needs (pure) ---- */

typedef enum {
  AW_CREDS_STATIC = 0,       /* accessKeySecret + secretKeySecret */
  AW_CREDS_WEB_IDENTITY,     /* AssumeRoleWithWebIdentity */
  AW_CREDS_WEB_IDENTITY_ROLE, /* ... then AssumeRole(roleARN) with those */
} aw_creds_kind;

typedef struct {
  aw_creds_kind kind;
  char *web_role_arn;   /* AWS_ROLE_ARN */
  char *token_file;     /* AWS_WEB_IDENTITY_TOKEN_FILE, as given */
  char *session_name;   /* AWS_ROLE_SESSION_NAME, else argowait-<pod> */
  char *assume_role_arn; /* the location's roleARN (WEB_IDENTITY_ROLE) */
  aw_sts_endpoint endpoint;
} aw_creds_plan;

/* Decides from the location and the environment. Returns 0, or -1 with
 * *why (malloc'd): a reason for every artifact (unsupported source, bad
 * variable). pod_name may be NULL. */
int aw_creds_plan_make(const aw_archive_location *loc, aw_getenv_fn env, const char *pod_name,
                       aw_creds_plan *out, char **why);
void aw_creds_plan_free(aw_creds_plan *p);

/* Reads the web identity token (blocking: for the thread pool). Returns 0
 * and the token without surrounding whitespace, or -1 with *why (malloc'd,
 * names the file, never its content). */
int aw_sts_read_token(const char *path, aw_bytes *out, char **why);

/* ---- the request (pure) ---- */

/* The form-encoded body (malloc'd; holds the token: wipe it). token is NULL
 * for AssumeRole; duration_s 0 leaves DurationSeconds out. */
char *aw_sts_request_body(const char *action, const char *role_arn, const char *session_name,
                          const char *token, unsigned duration_s);

typedef enum { AW_STS_OK = 0, AW_STS_TRANSIENT, AW_STS_PERMANENT, AW_STS_CANCELLED } aw_sts_status;

/* How an attempt ended: transport error (tls: verification failed), else
 * the status and the parsed answer. */
aw_sts_status aw_sts_classify(bool transport_error, bool tls_verify_failed, long status,
                              const aw_sts_answer *answer);

/* ---- getting credentials, on the loop ---- */

typedef struct aw_sts aw_sts;

typedef struct {
  aw_sts_status status;
  const char *message; /* why it failed, NULL on OK; never holds a secret */
  const char *access_key_id, *secret_access_key, *session_token; /* OK only */
  const char *expiration; /* may be NULL */
  unsigned attempts;
} aw_sts_result;

/* Called exactly once, from the loop (never inside aw_sts_start), unless the
 * client is freed first. The credentials live only during the call. */
typedef void (*aw_sts_cb)(const aw_sts_result *res, void *arg);

/* Starts the plan's STS calls with the web identity token (copied; the
 * caller wipes its own). budget must outlive the client. Returns NULL when
 * out of memory. */
aw_sts *aw_sts_start(uv_loop_t *loop, aw_http *http, const aw_budget *budget,
                     const aw_creds_plan *plan, const char *token, const char *user_agent,
                     aw_sts_cb cb, void *arg);
/* The budget changed: clip the attempt in flight; when now_too, wake a
 * sleeping retry at once. */
void aw_sts_budget_changed(aw_sts *s, bool now_too);
/* Where it stands, for a reason when it is stopped early: "STS <action>
 * (role <arn>, <url>): <n> attempts, the last: <error>" (malloc'd, no
 * secret). */
char *aw_sts_progress(const aw_sts *s);
/* Stops (no callback after this), wipes the secrets; the rest is freed once
 * the loop has closed the timer. */
void aw_sts_free(aw_sts *s);

#endif
