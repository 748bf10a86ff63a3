/* The Artifactory client: an upload is one PUT, retried as a whole.
 *
 * Life of an upload: a pool job opens the file beneath its folder; then
 * attempts run on aw_http, each streaming the file from its first byte;
 * between attempts the upload sleeps on its own timer. The outcome is handed
 * to the caller from that timer (never from inside a call of ours). The
 * upload's memory goes when its timer has closed and no pool job holds it. */
#include "argowait/artifactory.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/filestream.h"
#include "argowait/log.h"
#include "argowait/safefile.h"
#include "argowait/secret.h"
#include "argowait/strbuf.h"

#define CONNECT_TIMEOUT_MS 10000u
#define LOW_SPEED_TIME_S 60L        /* no byte for this long: the attempt is over */
#define MIN_ATTEMPT_MS 50u
#define ANSWER_TEXT_MAX 200u
#define ANSWER_PARSE_MAX (64u * 1024u)

static const aw_retry_rules retry_rules = {&aw_policy_calm, &aw_policy_hurried, MIN_ATTEMPT_MS};

struct aw_artifactory_op {
  aw_artifactory *client; /* NULL once the client is freed */
  char *url, *base_dir, *rel;
  bool nofollow;
  aw_artifactory_cb cb;
  void *arg;
  unsigned refs; /* the timer handle, an open job in flight */
  uv_timer_t timer; /* retry sleeps, then the delivery */
  bool sleeping, decided, delivered;
  uv_work_t open_work;
  int open_fd, open_err;
  uint64_t size;
  aw_filestream *body;
  aw_http_request *inflight;
  unsigned attempts, transient_failures;
  long last_status;
  char *last_error;
  aw_artifactory_status status;
  char *message;
  aw_artifactory_op *prev, *next;
};

struct aw_artifactory {
  uv_loop_t *loop;
  aw_http *http;
  char *username, *password; /* NULL: no authentication */
  char *ca_file, *user_agent;
  const aw_budget *budget;
  aw_artifactory_op *ops;
  aw_artifactory_stats stats;
  aw_jitter jitter;
};

/* ---- pure helpers ---- */

static bool starts_with_nocase(const char *s, const char *prefix) {
  return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int aw_artifactory_check_url(const char *url, const char **why) {
  const char *rest = NULL;
  if (!url || !*url) *why = "the url is empty";
  else if (strlen(url) > AW_ARTIFACTORY_URL_MAX) *why = "the url is too long";
  else if (starts_with_nocase(url, "https://")) rest = url + 8;
  else if (starts_with_nocase(url, "http://")) rest = url + 7;
  else *why = "the url must start with https:// or http://";
  if (!rest) return -1;
  for (const unsigned char *p = (const unsigned char *)url; *p; p++) {
    if (*p <= ' ' || *p >= 0x7f) {
      *why = "the url holds a space, a control character or a non-ASCII byte";
      return -1;
    }
    if (*p == '?' || *p == '#') {
      *why = "the url must not have a query or a fragment";
      return -1;
    }
  }
  size_t authority = strcspn(rest, "/");
  if (authority == 0) {
    *why = "the url has no host";
    return -1;
  }
  if (memchr(rest, '@', authority)) {
    *why = "the url must not hold a user or password (use usernameSecret and passwordSecret)";
    return -1;
  }
  /* What curl would refuse at every attempt (a bad port, a bad IPv6
   * literal) must fail here, once, rather than look like a network error
   * that is retried until the grace period. */
  CURLU *u = curl_url();
  char *host = NULL;
  bool parsed = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;
  curl_free(host);
  curl_url_cleanup(u);
  if (!parsed) {
    *why = "the url cannot be parsed (host and port)";
    return -1;
  }
  return 0;
}

/* Go's url package leaves these unescaped in a path (shouldEscape with
 * encodePath); everything else is %XX. */
static bool path_byte_kept(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return strchr("-_.~$&+,/:;=@", c) != NULL && c != '\0';
}

char *aw_artifactory_join_url(const char *base, const char *name) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(base);
  while (n && base[n - 1] == '/') n--;
  aw_strbuf b;
  aw_strbuf_init(&b);
  int rc = aw_strbuf_append(&b, base, n);
  rc |= aw_strbuf_appends(&b, "/");
  while (*name == '/') name++;
  for (const unsigned char *p = (const unsigned char *)name; *p && rc == 0; p++) {
    if (path_byte_kept(*p)) {
      rc |= aw_strbuf_append(&b, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      rc |= aw_strbuf_append(&b, e, 3);
    }
  }
  if (rc != 0) {
    aw_strbuf_free(&b);
    return NULL;
  }
  return aw_strbuf_take(&b);
}

/* ---- small helpers ---- */

/* Replaces the username and password wherever they appear in *msg, the
 * words of a server (its answer, curl's error): a server may echo what it
 * was sent, and a message must never carry a credential. */
static void scrub(const aw_artifactory *a, char **msg) {
  const char *secrets[] = {a ? a->password : NULL, a ? a->username : NULL};
  aw_secret_scrub(msg, secrets, sizeof(secrets) / sizeof(*secrets));
}

/* Artifactory answers {"errors":[{"status":401,"message":"Bad credentials"}]};
 * other servers (a proxy) answer anything. One line either way. */
static char *answer_text(const char *body, size_t len) {
  if (body && len && len <= ANSWER_PARSE_MAX) {
    cJSON *root = cJSON_ParseWithLength(body, len);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "errors"), 0);
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(first, "message"));
    char *out = msg ? aw_api_status_message(msg, strlen(msg)) : NULL;
    cJSON_Delete(root);
    if (out) {
      out[aw_utf8_cut(out, strlen(out), ANSWER_TEXT_MAX)] = '\0';
      return out;
    }
  }
  if (!body || !len) return NULL;
  char *out = aw_api_status_message(body, len < ANSWER_TEXT_MAX ? len : ANSWER_TEXT_MAX);
  if (out) out[aw_utf8_cut(out, strlen(out), ANSWER_TEXT_MAX)] = '\0';
  return out;
}

static uint64_t time_left(const aw_artifactory *a) {
  return aw_budget_clip(a->budget, uv_now(a->loop), UINT64_MAX);
}

/* ---- the upload's life ---- */

static void start_attempt(aw_artifactory_op *op);

static void op_unlink(aw_artifactory_op *op) {
  aw_artifactory *a = op->client;
  if (op->prev) op->prev->next = op->next;
  else if (a && a->ops == op) a->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

static void op_unref(aw_artifactory_op *op) {
  if (--op->refs) return;
  aw_filestream_free(op->body);
  free(op->url);
  free(op->base_dir);
  free(op->rel);
  free(op->last_error);
  free(op->message);
  free(op);
}

static void on_timer_closed(uv_handle_t *h) { op_unref(h->data); }

/* Out of the client, nothing in flight, timer closing: no callback ever. */
static void op_release(aw_artifactory_op *op) {
  if (op->inflight) aw_http_cancel(op->inflight);
  op->inflight = NULL;
  if (op->body) aw_filestream_detach(op->body);
  op_unlink(op);
  op->client = NULL;
  op->delivered = true;
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, on_timer_closed);
}

static void on_deliver(uv_timer_t *t) {
  aw_artifactory_op *op = t->data;
  aw_artifactory_result res = {
      .status = op->status,
      .http_status = op->last_status,
      .message = op->status == AW_ARTIFACTORY_OK ? NULL : op->message,
      .attempts = op->attempts,
      .bytes = op->size,
  };
  aw_artifactory_cb cb = op->cb;
  void *arg = op->arg;
  /* Held across the callback, which may free the client (and so this). */
  op->refs++;
  op_release(op);
  cb(&res, arg);
  op_unref(op);
}

/* The outcome is known: stop what runs, deliver from the timer. */
static void op_decide(aw_artifactory_op *op, aw_artifactory_status status, const char *what) {
  if (op->decided) return;
  op->decided = true;
  op->status = status;
  if (op->inflight) aw_http_cancel(op->inflight);
  op->inflight = NULL;
  if (op->body) aw_filestream_detach(op->body);
  op->sleeping = false;
  /* what is scrubbed already where it holds a server's words; the URL is
   * the template's and holds no credential (aw_artifactory_check_url). */
  if (status != AW_ARTIFACTORY_OK &&
      asprintf(&op->message, "%s: %s", op->url, what ? what : "failed") < 0)
    op->message = NULL;
  uv_timer_stop(&op->timer);
  uv_timer_start(&op->timer, on_deliver, 0, 0);
}

static void give_up(aw_artifactory_op *op) {
  char *what = NULL;
  if (asprintf(&what, "gave up after %u attempts: %s", op->attempts,
               op->last_error ? op->last_error : "no answer") < 0)
    what = NULL;
  op_decide(op, AW_ARTIFACTORY_TRANSIENT, what ? what : "gave up");
  free(what);
}

static void on_sleep_done(uv_timer_t *t) {
  aw_artifactory_op *op = t->data;
  op->sleeping = false;
  start_attempt(op);
}

static void schedule_retry(aw_artifactory_op *op, const char *retry_after) {
  aw_artifactory *a = op->client;
  uint64_t delay;
  if (!aw_retry_delay(&retry_rules, a->budget, uv_now(a->loop), op->transient_failures, retry_after,
                      aw_unix_now_ms(), &a->jitter, &delay)) {
    aw_warn("PUT %s: giving up, the grace period is almost over (%s)", op->url,
            op->last_error ? op->last_error : "no answer");
    give_up(op);
    return;
  }
  aw_warn("PUT %s failed (attempt %u): %s; retrying in %llu ms", op->url, op->attempts,
          op->last_error ? op->last_error : "no answer", (unsigned long long)delay);
  a->stats.retries++;
  op->sleeping = true;
  uv_timer_start(&op->timer, on_sleep_done, delay, 0);
}

typedef enum { OUT_OK, OUT_TRANSIENT, OUT_PERMANENT } outcome;

static outcome classify(const aw_http_response *res) {
  if (res->transport_error) return res->tls_verify_failed ? OUT_PERMANENT : OUT_TRANSIENT;
  if (res->status >= 200 && res->status < 300) return OUT_OK;
  if (res->status == 408 || res->status == 429 || res->status >= 500) return OUT_TRANSIENT;
  return OUT_PERMANENT;
}

/* "HTTP 401: Bad credentials", or curl's one-line error. */
static char *describe_failure(const aw_artifactory_op *op, const aw_http_response *res) {
  char *msg = NULL;
  int body_err = op->body ? aw_filestream_error(op->body) : 0;
  if (body_err) {
    if (asprintf(&msg, "reading %s: %s", op->rel,
                 body_err == -ENODATA ? "the file shrank during the upload"
                                      : aw_safefile_strerror(body_err)) < 0)
      msg = NULL;
  } else if (res->transport_error) {
    msg = strdup(res->error ? res->error : "transport error");
  } else {
    char *text = answer_text(res->body, res->body_len);
    if (asprintf(&msg, "HTTP %ld%s%s", res->status, text ? ": " : "", text ? text : "") < 0)
      msg = NULL;
    free(text);
  }
  return msg;
}

static void on_attempt_done(const aw_http_response *res, void *arg) {
  aw_artifactory_op *op = arg;
  aw_artifactory *a = op->client;
  op->inflight = NULL;
  if (op->body) aw_filestream_detach(op->body);
  uint64_t held = op->body ? aw_filestream_buffer_bytes(op->body) : 0;
  if (held > a->stats.buffer_peak) a->stats.buffer_peak = held;
  op->last_status = res->transport_error ? 0 : res->status;
  outcome out = classify(res);
  if (op->body && aw_filestream_error(op->body)) out = OUT_PERMANENT; /* retrying cannot help */
  aw_debug("PUT %s -> %ld in %llu ms", op->url, op->last_status,
           (unsigned long long)res->elapsed_ms);
  if (out == OUT_OK) {
    op_decide(op, AW_ARTIFACTORY_OK, NULL);
    return;
  }
  free(op->last_error);
  op->last_error = describe_failure(op, res);
  scrub(a, &op->last_error);
  if (out == OUT_PERMANENT) {
    op_decide(op, AW_ARTIFACTORY_PERMANENT, op->last_error ? op->last_error : "failed");
    return;
  }
  op->transient_failures++;
  schedule_retry(op, res->retry_after);
}

static void configure_easy(CURL *e, void *arg) {
  aw_artifactory_op *op = arg;
  aw_artifactory *a = op->client;
  if (a->username) {
    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    curl_easy_setopt(e, CURLOPT_USERNAME, a->username);
    curl_easy_setopt(e, CURLOPT_PASSWORD, a->password ? a->password : "");
  }
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
  aw_filestream_attach(op->body, e);
}

static void start_attempt(aw_artifactory_op *op) {
  aw_artifactory *a = op->client;
  uint64_t now = uv_now(a->loop);
  /* One PUT carries the whole file: before SIGTERM it may take as long as
   * it needs (a stalled one is caught by the low-speed limit), since a fixed
   * cap would restart a large upload from byte 0 forever. */
  uint64_t timeout = aw_budget_clip(a->budget, now, UINT64_MAX);
  if (timeout < MIN_ATTEMPT_MS) {
    if (!op->last_error) op->last_error = strdup("no time left in the grace period");
    give_up(op);
    return;
  }
  static const char *const headers[] = {"Content-Type: application/octet-stream", NULL};
  aw_http_spec spec = {
      .method = "PUT",
      .url = op->url,
      .headers = headers,
      .ca_file = a->ca_file,
      .user_agent = a->user_agent,
      .deadline = a->budget->active ? now + timeout : 0,
      .connect_timeout_ms = CONNECT_TIMEOUT_MS < timeout ? CONNECT_TIMEOUT_MS : timeout,
      .configure = configure_easy,
      .configure_arg = op,
      /* A wrong password is then answered before the body is sent. */
      .allow_expect_100 = true,
  };
  op->attempts++;
  a->stats.attempts++;
  op->inflight = aw_http_start(a->http, &spec, on_attempt_done, op);
  if (!op->inflight) {
    aw_filestream_detach(op->body);
    op_decide(op, AW_ARTIFACTORY_PERMANENT, "cannot start an HTTP request");
  }
}

/* ---- opening the file (pool) ---- */

static void open_work(uv_work_t *w) {
  aw_artifactory_op *op = w->data;
  op->open_fd = -1;
  int dfd = open(op->base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    op->open_err = -errno;
    return;
  }
  int fd = op->nofollow ? aw_open_beneath_walk(dfd, op->rel) : aw_open_beneath(dfd, op->rel);
  close(dfd);
  struct stat sb;
  if (fd >= 0 && fstat(fd, &sb) != 0) {
    op->open_err = -errno;
    close(fd);
    return;
  }
  if (fd < 0) {
    op->open_err = fd;
    return;
  }
  op->open_fd = fd;
  op->size = (uint64_t)sb.st_size;
}

static void open_done(uv_work_t *w, int status) {
  aw_artifactory_op *op = w->data;
  if (status != 0 && !op->open_err) op->open_err = -ECANCELED;
  if (op->delivered || op->decided) { /* freed or cancelled meanwhile */
    if (op->open_fd >= 0) close(op->open_fd);
    op_unref(op);
    return;
  }
  if (!op->open_err) {
    op->body = aw_filestream_new(op->client->loop, op->open_fd, op->size);
    if (!op->body) {
      close(op->open_fd);
      op->open_err = -ENOMEM;
    }
  }
  if (op->open_err) {
    char what[600];
    snprintf(what, sizeof(what), "cannot read %s: %s", op->rel, aw_safefile_strerror(op->open_err));
    op_decide(op, AW_ARTIFACTORY_PERMANENT, what);
  } else {
    start_attempt(op);
  }
  op_unref(op);
}

/* ---- public ---- */

aw_artifactory_op *aw_artifactory_put_file(aw_artifactory *a, const char *url,
                                           const char *base_dir, const char *rel, bool nofollow,
                                           aw_artifactory_cb cb, void *arg) {
  const char *why;
  if (!a || !cb || !base_dir || !rel || aw_artifactory_check_url(url, &why) != 0) return NULL;
  aw_artifactory_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->client = a;
  op->cb = cb;
  op->arg = arg;
  op->nofollow = nofollow;
  op->open_fd = -1;
  op->url = strdup(url);
  op->base_dir = strdup(base_dir);
  op->rel = strdup(rel);
  if (!op->url || !op->base_dir || !op->rel) {
    free(op->url);
    free(op->base_dir);
    free(op->rel);
    free(op);
    return NULL;
  }
  uv_timer_init(a->loop, &op->timer);
  op->timer.data = op;
  op->refs = 1;
  op->next = a->ops;
  if (a->ops) a->ops->prev = op;
  a->ops = op;
  op->open_work.data = op;
  op->refs++;
  if (uv_queue_work(a->loop, &op->open_work, open_work, open_done) != 0) {
    op->refs--;
    op_decide(op, AW_ARTIFACTORY_PERMANENT, "cannot queue the file read");
  }
  return op;
}

void aw_artifactory_cancel(aw_artifactory_op *op) {
  if (!op || op->delivered || op->decided) return;
  op_decide(op, AW_ARTIFACTORY_CANCELLED, "cancelled");
}

void aw_artifactory_budget_changed(aw_artifactory *a, bool now_too) {
  uint64_t now = uv_now(a->loop);
  uint64_t left = time_left(a);
  for (aw_artifactory_op *op = a->ops; op; op = op->next) {
    if (op->inflight) aw_http_clip_deadline(op->inflight, now + left);
    if (!op->sleeping) continue;
    uint64_t cap = now_too ? 0 : aw_policy_hurried.cap_ms;
    if (uv_timer_get_due_in(&op->timer) > cap) uv_timer_start(&op->timer, on_sleep_done, cap, 0);
  }
}

aw_artifactory_stats aw_artifactory_get_stats(const aw_artifactory *a) { return a->stats; }

aw_artifactory *aw_artifactory_new(uv_loop_t *loop, aw_http *http,
                                   const aw_artifactory_config *cfg, char **err) {
  if (err) *err = NULL;
  if (!cfg->budget) {
    if (err) *err = strdup("Artifactory configuration: a budget is required");
    return NULL;
  }
  aw_artifactory *a = calloc(1, sizeof(*a));
  if (!a) return NULL;
  a->loop = loop;
  a->http = http;
  a->budget = cfg->budget;
  a->username = cfg->username ? strdup(cfg->username) : NULL;
  a->password = cfg->username ? strdup(cfg->password ? cfg->password : "") : NULL;
  a->ca_file = cfg->ca_file && *cfg->ca_file ? strdup(cfg->ca_file) : NULL;
  a->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "argowait");
  aw_jitter_seed(&a->jitter, uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x2545F4914F6CDD1DULL);
  if ((cfg->username && (!a->username || !a->password)) || !a->user_agent ||
      (cfg->ca_file && *cfg->ca_file && !a->ca_file)) {
    aw_artifactory_free(a);
    return NULL;
  }
  return a;
}

void aw_artifactory_free(aw_artifactory *a) {
  if (!a) return;
  while (a->ops) op_release(a->ops);
  aw_secret_free(a->username);
  aw_secret_free(a->password);
  free(a->ca_file);
  free(a->user_agent);
  free(a);
}
