/* The Kubernetes API client: one logical request and its retries.
 *
 * An operation makes attempts until one ends in something other than a
 * transient failure. Between attempts it sleeps on a loop timer for a capped,
 * jittered exponential delay (or what Retry-After asks). Before SIGTERM that
 * goes on for as long as it takes; once the budget is active, every attempt's
 * deadline and every sleep is clipped to the time left, and the operation
 * gives up when too little is left for one more attempt. */
#include "argowait/kube.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "argowait/fsjob.h"
#include "argowait/log.h"
#include "argowait/safefile.h"
#include "argowait/strbuf.h"

#define API_PREFIX "/apis/argoproj.io/v1alpha1/namespaces/"
#define ATTEMPT_TIMEOUT_MS 30000u
#define CONNECT_TIMEOUT_MS 10000u
#define MIN_ATTEMPT_MS 20u          /* less than this left: give up (in-cluster requests take a few ms) */
#define TOKEN_MAX_AGE_MS 60000u
#define TOKEN_MAX_BYTES (64u * 1024u)

/* Before SIGTERM: patient. After: short sleeps, the window is small. */
static const aw_retry_rules retry_rules = {&aw_policy_calm, &aw_policy_hurried, MIN_ATTEMPT_MS};

struct aw_kube_op {
  aw_kube *kube;
  char *method;
  char *path; /* for logs: never holds a secret */
  char *url;
  char *content_type;
  char *body;
  bool retry;
  aw_kube_cb cb;
  void *arg;
  aw_http_request *inflight;
  uv_timer_t sleep_timer;
  bool sleeping;
  bool awaiting_token;
  bool reauthenticated;
  unsigned attempts;
  unsigned transient_failures;
  long last_status;
  char *last_message;
  aw_kube_op *prev, *next;
};

struct aw_kube {
  uv_loop_t *loop;
  aw_http *http;
  char *base_url;
  char *ca_file;
  char *token_file; /* NULL: a fixed token, or none (client certificate) */
  /* The TLS identity and CA as given; set on each easy handle. */
  char *ca_pem;
  size_t ca_pem_len;
  char *client_cert_file;
  char *client_key_file;
  char *client_cert_pem;
  size_t client_cert_pem_len;
  char *client_key_pem;
  size_t client_key_pem_len;
  char *namespace_;
  char *user_agent;
  char *token;
  uint64_t token_read_at;
  bool token_reading;
  const aw_budget *budget;
  aw_kube_op *ops;
  aw_kube_stats stats;
  aw_jitter jitter;
};

static void start_attempt(aw_kube_op *op);

static void trim_token(char *t) {
  size_t n = strlen(t);
  while (n && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' ' || t[n - 1] == '\t')) t[--n] = '\0';
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static char *dup_bytes(const char *data, size_t len) {
  if (!data) return NULL;
  char *out = malloc(len + 1);
  if (out) {
    memcpy(out, data, len);
    out[len] = '\0';
  }
  return out;
}

static void wipe_free(char *s, size_t len) {
  if (s) memset(s, 0, len);
  free(s);
}

aw_kube *aw_kube_new(uv_loop_t *loop, aw_http *http, const aw_kube_config *cfg, char **err) {
  aw_kube *k = calloc(1, sizeof(*k));
  if (!k) return NULL;
  k->loop = loop;
  k->http = http;
  k->base_url = strdup(cfg->base_url);
  k->ca_file = dup_or_null(cfg->ca_file);
  k->ca_pem = dup_bytes(cfg->ca_pem, cfg->ca_pem_len);
  k->ca_pem_len = cfg->ca_pem_len;
  k->token_file = dup_or_null(cfg->token_file);
  k->token = dup_or_null(cfg->token);
  k->client_cert_file = dup_or_null(cfg->client_cert_file);
  k->client_key_file = dup_or_null(cfg->client_key_file);
  k->client_cert_pem = dup_bytes(cfg->client_cert_pem, cfg->client_cert_pem_len);
  k->client_cert_pem_len = cfg->client_cert_pem_len;
  k->client_key_pem = dup_bytes(cfg->client_key_pem, cfg->client_key_pem_len);
  k->client_key_pem_len = cfg->client_key_pem_len;
  k->namespace_ = strdup(cfg->namespace_);
  k->user_agent = strdup(cfg->user_agent);
  k->budget = cfg->budget;
  aw_jitter_seed(&k->jitter, uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL);
  k->token_read_at = uv_now(loop);
  if (!k->token_file) return k;
  aw_bytes tok = {0};
  int rc = aw_read_trusted(k->token_file, TOKEN_MAX_BYTES, &tok);
  k->stats.token_reads++;
  if (rc != 0) {
    if (err && asprintf(err, "cannot read the service account token %s: %s", cfg->token_file,
                        aw_safefile_strerror(rc)) < 0)
      *err = NULL;
    aw_kube_free(k);
    return NULL;
  }
  trim_token(tok.data);
  k->token = tok.data;
  return k;
}

static void on_op_closed(uv_handle_t *handle) {
  aw_kube_op *op = handle->data;
  free(op->method);
  free(op->path);
  free(op->url);
  free(op->content_type);
  free(op->body);
  free(op->last_message);
  free(op);
}

static void release_op(aw_kube_op *op) {
  aw_kube *k = op->kube;
  if (op->inflight) aw_http_cancel(op->inflight);
  op->inflight = NULL;
  uv_timer_stop(&op->sleep_timer);
  if (op->prev) op->prev->next = op->next;
  else if (k->ops == op) k->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
  uv_close((uv_handle_t *)&op->sleep_timer, on_op_closed);
}

void aw_kube_free(aw_kube *k) {
  if (!k) return;
  while (k->ops) release_op(k->ops);
  free(k->base_url);
  free(k->ca_file);
  free(k->token_file);
  free(k->client_cert_file);
  free(k->client_key_file);
  free(k->ca_pem);
  wipe_free(k->client_cert_pem, k->client_cert_pem_len);
  wipe_free(k->client_key_pem, k->client_key_pem_len);
  free(k->namespace_);
  free(k->user_agent);
  if (k->token) {
    /* Wipe before free: a token must not linger in freed heap. */
    memset(k->token, 0, strlen(k->token));
    free(k->token);
  }
  free(k);
}

static void finish_op(aw_kube_op *op, aw_api_class cls) {
  aw_kube_result res = {
      .cls = cls,
      .status = op->last_status,
      .message = cls == AW_API_OK ? NULL : op->last_message,
      .attempts = op->attempts,
  };
  aw_kube_cb cb = op->cb;
  void *arg = op->arg;
  /* Unlink first so the callback can start or cancel other operations. */
  op->cb = NULL;
  cb(&res, arg);
  release_op(op);
}

static void set_message(aw_kube_op *op, char *msg) {
  free(op->last_message);
  op->last_message = msg;
}

static void on_token_read(int err, aw_bytes *data, void *arg) {
  aw_kube *k = arg;
  k->token_reading = false;
  k->stats.token_reads++;
  if (err == 0 && data->len > 0) {
    trim_token(data->data);
    if (k->token) {
      memset(k->token, 0, strlen(k->token));
      free(k->token);
    }
    k->token = data->data;
    data->data = NULL;
    data->len = 0;
  } else {
    aw_warn("cannot re-read the service account token: %s", err ? aw_safefile_strerror(err) : "empty file");
  }
  k->token_read_at = uv_now(k->loop);
  /* An attempt can end at once and unlink its operation, so start over from
   * the head after each one. */
  bool resumed = true;
  while (resumed) {
    resumed = false;
    for (aw_kube_op *op = k->ops; op; op = op->next) {
      if (op->awaiting_token) {
        op->awaiting_token = false;
        start_attempt(op);
        resumed = true;
        break;
      }
    }
  }
}

static void refresh_token(aw_kube *k) {
  if (k->token_reading || !k->token_file) return;
  if (aw_fs_read_trusted(k->loop, k->token_file, TOKEN_MAX_BYTES, on_token_read, k) == 0)
    k->token_reading = true;
}

static uint64_t time_left(const aw_kube *k) {
  return aw_budget_clip(k->budget, uv_now(k->loop), UINT64_MAX);
}

static void on_sleep_done(uv_timer_t *timer) {
  aw_kube_op *op = timer->data;
  op->sleeping = false;
  start_attempt(op);
}

static void schedule_retry(aw_kube_op *op, const char *retry_after) {
  aw_kube *k = op->kube;
  uint64_t delay;
  if (!aw_retry_delay(&retry_rules, k->budget, uv_now(k->loop), op->transient_failures, retry_after,
                      aw_unix_now_ms(), &k->jitter, &delay)) {
    aw_warn("%s %s: giving up, the grace period is almost over (%s)", op->method, op->path,
            op->last_message ? op->last_message : "no answer");
    finish_op(op, AW_API_TRANSIENT);
    return;
  }
  aw_warn("%s %s failed (attempt %u): %s; retrying in %llu ms", op->method, op->path, op->attempts,
          op->last_message ? op->last_message : "no answer", (unsigned long long)delay);
  op->sleeping = true;
  uv_timer_start(&op->sleep_timer, on_sleep_done, delay, 0);
}

static char *describe_answer(const aw_http_response *res) {
  char *msg = NULL;
  if (res->transport_error) {
    if (asprintf(&msg, "%s", res->error ? res->error : "transport error") < 0) msg = NULL;
    return msg;
  }
  char *status = aw_api_status_message(res->body, res->body_len);
  if (asprintf(&msg, "HTTP %ld: %s", res->status, status ? status : "") < 0) msg = NULL;
  free(status);
  return msg;
}

static void on_attempt_done(const aw_http_response *res, void *arg) {
  aw_kube_op *op = arg;
  aw_kube *k = op->kube;
  op->inflight = NULL;
  op->last_status = res->transport_error ? 0 : res->status;
  aw_debug("%s %s -> %ld in %llu ms", op->method, op->path, op->last_status,
           (unsigned long long)res->elapsed_ms);
  aw_api_class cls = aw_api_classify(res->transport_error, res->tls_verify_failed, res->status,
                                     res->body, res->body_len);
  if (cls != AW_API_OK) set_message(op, describe_answer(res));
  if (cls == AW_API_UNAUTHORIZED) {
    /* Only a token file can hold a newer token. */
    if (op->reauthenticated || !k->token_file) {
      char *msg = NULL;
      if (asprintf(&msg, "%s (still unauthorized after re-reading the token)",
                   op->last_message ? op->last_message : "HTTP 401") < 0)
        msg = NULL;
      set_message(op, msg);
      finish_op(op, AW_API_PERMANENT);
      return;
    }
    /* The token rotates; read the file again and retry at once. */
    aw_info("%s %s: unauthorized, re-reading the service account token", op->method, op->path);
    op->reauthenticated = true;
    op->awaiting_token = true;
    refresh_token(k);
    return;
  }
  if (cls == AW_API_TRANSIENT && op->retry) {
    op->transient_failures++;
    schedule_retry(op, res->retry_after);
    return;
  }
  finish_op(op, cls);
}

/* The CA and client identity that a kubeconfig may give as PEM bytes. */
static void configure_tls(CURL *easy, void *arg) {
  const aw_kube *k = arg;
  if (k->ca_pem) {
    struct curl_blob blob = {k->ca_pem, k->ca_pem_len, CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (k->client_cert_pem) {
    struct curl_blob blob = {k->client_cert_pem, k->client_cert_pem_len, CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &blob);
  } else if (k->client_cert_file) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, k->client_cert_file);
  }
  if (k->client_key_pem) {
    struct curl_blob blob = {k->client_key_pem, k->client_key_pem_len, CURL_BLOB_COPY};
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &blob);
  } else if (k->client_key_file) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY, k->client_key_file);
  }
}

static void start_attempt(aw_kube_op *op) {
  aw_kube *k = op->kube;
  uint64_t now = uv_now(k->loop);
  uint64_t timeout = aw_budget_clip(k->budget, now, ATTEMPT_TIMEOUT_MS);
  if (timeout < MIN_ATTEMPT_MS) {
    if (!op->last_message) set_message(op, strdup("no time left in the grace period"));
    finish_op(op, AW_API_TRANSIENT);
    return;
  }
  if (now - k->token_read_at > TOKEN_MAX_AGE_MS) refresh_token(k);
  aw_strbuf auth;
  aw_strbuf_init(&auth);
  if (k->token && k->token[0]) aw_strbuf_appendf(&auth, "Authorization: Bearer %s", k->token);
  char ctype[160];
  snprintf(ctype, sizeof(ctype), "Content-Type: %s", op->content_type);
  /* Without a token (client certificate only) the list simply starts later. */
  const char *all_headers[] = {auth.data, ctype, "Accept: application/json", NULL};
  const char *const *headers = auth.data ? all_headers : all_headers + 1;
  aw_http_spec spec = {
      .method = op->method,
      .url = op->url,
      .headers = headers,
      .body = op->body,
      .body_len = op->body ? strlen(op->body) : 0,
      .ca_file = k->ca_file,
      .configure = configure_tls,
      .configure_arg = k,
      .user_agent = k->user_agent,
      .deadline = now + timeout,
      .connect_timeout_ms = CONNECT_TIMEOUT_MS < timeout ? CONNECT_TIMEOUT_MS : timeout,
  };
  op->attempts++;
  k->stats.attempts++;
  if (strcmp(op->method, "POST") == 0) k->stats.posts++;
  else if (strcmp(op->method, "PATCH") == 0) k->stats.patches++;
  op->inflight = aw_http_start(k->http, &spec, on_attempt_done, op);
  if (auth.data) memset(auth.data, 0, auth.len);
  aw_strbuf_free(&auth);
  if (!op->inflight) {
    set_message(op, strdup("cannot start an HTTP request"));
    finish_op(op, AW_API_PERMANENT);
  }
}

aw_kube_op *aw_kube_request(aw_kube *k, const char *method, const char *suffix,
                            const char *content_type, const char *body, bool retry,
                            aw_kube_cb cb, void *arg) {
  aw_kube_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->kube = k;
  op->method = strdup(method);
  if (asprintf(&op->path, API_PREFIX "%s/workflowtaskresults%s", k->namespace_, suffix) < 0)
    op->path = NULL;
  if (op->path && asprintf(&op->url, "%s%s", k->base_url, op->path) < 0) op->url = NULL;
  op->content_type = strdup(content_type);
  op->body = body ? strdup(body) : NULL;
  op->retry = retry;
  op->cb = cb;
  op->arg = arg;
  uv_timer_init(k->loop, &op->sleep_timer);
  op->sleep_timer.data = op;
  op->next = k->ops;
  if (k->ops) k->ops->prev = op;
  k->ops = op;
  if (!op->method || !op->url || !op->content_type || (body && !op->body)) {
    release_op(op);
    return NULL;
  }
  /* The first attempt starts from the loop, never inside this call: the
   * caller must hold the returned pointer before any callback can run. */
  op->sleeping = true;
  uv_timer_start(&op->sleep_timer, on_sleep_done, 0, 0);
  return op;
}

void aw_kube_cancel(aw_kube_op *op) {
  if (op && op->cb) {
    op->cb = NULL;
    release_op(op);
  }
}

void aw_kube_budget_changed(aw_kube *k, bool now_too) {
  uint64_t now = uv_now(k->loop);
  uint64_t left = time_left(k);
  for (aw_kube_op *op = k->ops; op; op = op->next) {
    if (op->inflight) aw_http_clip_deadline(op->inflight, now + left);
    if (!op->sleeping) continue;
    uint64_t remaining = uv_timer_get_due_in(&op->sleep_timer);
    uint64_t cap = now_too ? 0 : aw_policy_hurried.cap_ms;
    if (remaining > cap) uv_timer_start(&op->sleep_timer, on_sleep_done, cap, 0);
  }
}

aw_kube_stats aw_kube_get_stats(const aw_kube *k) { return k->stats; }
