/* The two artifact repositories behind one interface (store.h).
 *
 * Each kind is a table of functions; the public functions only dispatch.
 * An aw_store_op wraps the kind's own operation so that its result reaches
 * the caller in one shape; the store keeps its operations in a list so that
 * freeing the store (which stops the client without callbacks) frees them. */
#include "argowait/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "argowait/artifactory.h"
#include "argowait/s3.h"
#include "argowait/safefile.h"
#include "argowait/strbuf.h"
#include "argowait/sts.h"

#define SECRET_CAP (64u * 1024u)
#define USER_AGENT "argowait (argo-executor wait)"

typedef struct store_kind store_kind;

struct aw_store_op {
  aw_store *store;
  void *inner; /* aw_s3_op or aw_artifactory_op */
  aw_store_cb cb;
  void *arg;
  aw_store_op *prev, *next;
};

struct aw_store {
  const store_kind *kind;
  aw_store_op *ops;
  /* S3: the template's archiveLocation, and where its credentials come
   * from: static keys, or STS with the web identity token. */
  const aw_archive_location *loc;
  uint64_t part_size;
  unsigned threads;
  aw_creds_plan plan;
  aw_bytes access, secret, token, web_token;
  char *ca_path;
  aw_s3 *s3;
  /* A connect waiting for STS: what the client needs once it answers, and
   * whom to tell. */
  aw_sts *sts;
  uv_loop_t *loop;
  aw_http *http;
  const aw_budget *budget;
  aw_store_cb connect_cb;
  void *connect_arg;
  /* Artifactory: the url upload names go under (or the artifact's own), and
   * the Secrets that hold the credentials (both NULL: none). */
  const char *url;
  const aw_secret_ref *username_ref, *password_ref;
  aw_bytes username, password;
  aw_artifactory *art;
};

struct store_kind {
  const char *type;
  bool holds_folders;
  char *(*key)(const aw_store *s, const char *upload_name);
  char *(*child_key)(const aw_store *s, const char *key, const char *rel);
  char *(*where)(const aw_store *s, const char *key);
  const char *location_member; /* "key" or "url" */
  int (*load_credentials)(aw_store *s, const aw_config *cfg, char **err);
  aw_store_connect_status (*connect)(aw_store *s, char **err); /* loop, http, budget, cb set */
  bool (*connect_stop)(aw_store *s, const char *cause, char **why); /* NULL: never waits */
  bool (*prepare)(aw_store *s, aw_store_op *op);
  void *(*put)(aw_store *s, aw_store_op *op, const char *key, const char *base_dir, const char *rel,
               bool nofollow);
  void (*cancel)(void *inner);
  void (*budget_changed)(aw_store *s, bool now_too);
  void (*close)(aw_store *s);
};

/* ---- shared helpers ---- */

static void wipe(aw_bytes *b) {
  if (b->data) explicit_bzero(b->data, b->len);
  aw_bytes_free(b);
}

/* A name usable as one path component. */
static bool safe_component(const char *s) {
  return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Reads a Secret file (a kubelet-managed mount: symlinks by design).
 * ref->name NULL: nothing to read. */
static int read_secret(const aw_config *cfg, const aw_secret_ref *ref, const char *what,
                       aw_bytes *out, char **err) {
  if (!ref || !ref->name) return 0;
  if (!safe_component(ref->name) || !safe_component(ref->key)) {
    *err = aw_strdupf("the %s secret name or key is not a plain name", what);
    return -1;
  }
  char *rest = aw_strdupf("%s/%s", ref->name, ref->key);
  char *path = rest ? aw_config_path(cfg, AW_PATH_SECRETS, rest) : NULL;
  free(rest);
  int rc = path ? aw_read_trusted(path, SECRET_CAP, out) : -ENOMEM;
  free(path);
  if (rc != 0) {
    *err = aw_strdupf("cannot read the %s from %s/%s/%s: %s", what, AW_PATH_SECRETS, ref->name, ref->key,
                aw_safefile_strerror(rc));
    return -1;
  }
  while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
    out->data[--out->len] = '\0';
  if (!out->len) {
    *err = aw_strdupf("the %s in %s/%s/%s is empty", what, AW_PATH_SECRETS, ref->name, ref->key);
    return -1;
  }
  /* Keys and tokens go into HTTP headers: a line break inside one would
   * inject a header of its own. No credential has control characters. */
  for (size_t i = 0; i < out->len; i++) {
    unsigned char c = (unsigned char)out->data[i];
    if (c < 0x20 || c == 0x7f) {
      *err = aw_strdupf("the %s in %s/%s/%s holds a control character (a line break inside, or a NUL)", what,
                  AW_PATH_SECRETS, ref->name, ref->key);
      return -1;
    }
  }
  return 0;
}

static void op_unlink(aw_store_op *op) {
  aw_store *s = op->store;
  if (op->prev) op->prev->next = op->next;
  else if (s->ops == op) s->ops = op->next;
  if (op->next) op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

/* The kind's operation ended: hand the result on and forget the wrapper. */
static void op_finish(aw_store_op *op, const aw_store_result *res) {
  aw_store_cb cb = op->cb;
  void *arg = op->arg;
  op_unlink(op);
  free(op);
  cb(res, arg);
}

/* ---- S3 ---- */

static char *s3_key(const aw_store *s, const char *upload_name) {
  const char *prefix = s->loc->key;
  if (!upload_name) return strdup(prefix ? prefix : "");
  size_t n = prefix ? strlen(prefix) : 0;
  while (n && prefix[n - 1] == '/') n--;
  return n ? aw_strdupf("%.*s/%s", (int)n, prefix, upload_name) : strdup(upload_name);
}

static char *s3_child_key(const aw_store *s, const char *key, const char *rel) {
  (void)s;
  size_t n = strlen(key);
  while (n && key[n - 1] == '/') n--;
  return n ? aw_strdupf("%.*s/%s", (int)n, key, rel) : strdup(rel);
}

static char *s3_where(const aw_store *s, const char *key) {
  return aw_strdupf("s3://%s/%s", s->loc->bucket ? s->loc->bucket : "", key ? key : "?");
}

static int s3_load_credentials(aw_store *s, const aw_config *cfg, char **err) {
  const aw_archive_location *l = s->loc;
  char *why = NULL;
  if (read_secret(cfg, &l->access_key, "access key", &s->access, &why) ||
      read_secret(cfg, &l->secret_key, "secret key", &s->secret, &why) ||
      read_secret(cfg, &l->session_token, "session token", &s->token, &why))
    goto fail;
  if (s->plan.kind != AW_CREDS_STATIC &&
      aw_sts_read_token(s->plan.token_file, &s->web_token, &why) != 0)
    goto fail;
  if (l->ca.name) {
    if (!safe_component(l->ca.name) || !safe_component(l->ca.key)) {
      why = aw_strdupf("the CA secret name or key is not a plain name");
      goto fail;
    }
    char *rest = aw_strdupf("%s/%s", l->ca.name, l->ca.key);
    s->ca_path = rest ? aw_config_path(cfg, AW_PATH_SECRETS, rest) : NULL;
    free(rest);
    struct stat st;
    if (!s->ca_path || stat(s->ca_path, &st) != 0) {
      why = aw_strdupf("cannot read the CA from %s/%s/%s", AW_PATH_SECRETS, l->ca.name, l->ca.key);
      goto fail;
    }
  }
  return 0;
fail:
  *err = aw_strdupf("S3 credentials: %s", why ? why : "out of memory");
  free(why);
  return -1;
}

/* The S3 client with these credentials; the ones read from Secrets are
 * wiped either way (aw_s3 keeps its own copy). */
static int s3_client(aw_store *s, const char *access, const char *secret, const char *token,
                     char **err) {
  const aw_archive_location *l = s->loc;
  const char *endpoint = l->endpoint ? l->endpoint : "s3.amazonaws.com";
  aw_s3_config c = {
      .endpoint = endpoint,
      .bucket = l->bucket,
      .region = l->region,
      .insecure = l->insecure,
      .path_style = strstr(endpoint, "amazonaws.com") == NULL,
      .access_key = access,
      .secret_key = secret,
      .session_token = token,
      .ca_file = s->ca_path,
      .user_agent = USER_AGENT,
      .part_size = s->part_size,
      .threads = s->threads,
      .budget = s->budget,
  };
  char *why = NULL;
  s->s3 = aw_s3_new(s->loop, s->http, &c, &why);
  wipe(&s->access);
  wipe(&s->secret);
  wipe(&s->token);
  if (s->s3) return 0;
  *err = aw_strdupf("cannot set up the S3 client: %s", why ? why : "out of memory");
  free(why);
  return -1;
}

/* STS answered: the client with its temporary credentials, or its error. */
static void s3_sts_done(const aw_sts_result *res, void *arg) {
  aw_store *s = arg;
  aw_sts *sts = s->sts;
  s->sts = NULL;
  char *err = NULL;
  if (res->status != AW_STS_OK)
    err = aw_strdupf("S3 credentials: %s", res->message ? res->message : "STS failed");
  else
    s3_client(s, res->access_key_id, res->secret_access_key, res->session_token, &err);
  bool ok = res->status == AW_STS_OK && s->s3;
  aw_store_result out = {
      .status = ok ? AW_STORE_OK : AW_STORE_FAILED,
      .message = ok ? NULL : err ? err : "S3 credentials: out of memory",
      .attempts = res->attempts,
  };
  aw_store_cb cb = s->connect_cb;
  void *cb_arg = s->connect_arg;
  aw_sts_free(sts); /* the client holds its own copy of the credentials now */
  cb(&out, cb_arg); /* may free the store: nothing of it is touched after */
  free(err);
}

static aw_store_connect_status s3_connect(aw_store *s, char **err) {
  if (s->plan.kind == AW_CREDS_STATIC)
    return s3_client(s, s->access.data, s->secret.data, s->token.data, err) == 0
               ? AW_STORE_CONNECTED
               : AW_STORE_CONNECT_FAILED;
  s->sts = aw_sts_start(s->loop, s->http, s->budget, &s->plan, s->web_token.data, USER_AGENT,
                        s3_sts_done, s);
  wipe(&s->web_token); /* aw_sts holds its own copy */
  if (s->sts) return AW_STORE_CONNECTING;
  *err = strdup("S3 credentials: cannot start the STS request");
  return AW_STORE_CONNECT_FAILED;
}

static bool s3_connect_stop(aw_store *s, const char *cause, char **why) {
  if (!s->sts) return false;
  char *progress = aw_sts_progress(s->sts);
  *why = aw_strdupf("S3 credentials: %s while getting them from %s", cause, progress ? progress : "STS");
  free(progress);
  aw_sts_free(s->sts);
  s->sts = NULL;
  return true;
}

static void s3_done(const aw_s3_result *r, void *arg) {
  aw_store_result res = {
      .status = r->status == AW_S3_OK          ? AW_STORE_OK
                : r->status == AW_S3_CANCELLED ? AW_STORE_CANCELLED
                                               : AW_STORE_FAILED,
      .message = r->message,
      .attempts = r->attempts,
      .bytes = r->bytes,
      .parts = r->parts,
  };
  op_finish(arg, &res);
}

static bool s3_prepare(aw_store *s, aw_store_op *op) {
  if (!s->loc->create_bucket) return false;
  op->inner = aw_s3_ensure_bucket(s->s3, true, s3_done, op);
  return true;
}

static void *s3_put(aw_store *s, aw_store_op *op, const char *key, const char *base_dir,
                    const char *rel, bool nofollow) {
  return nofollow ? aw_s3_put_file_nofollow(s->s3, key, base_dir, rel, s3_done, op)
                  : aw_s3_put_file(s->s3, key, base_dir, rel, s3_done, op);
}

static void s3_cancel(void *inner) { aw_s3_cancel(inner); }

static void s3_budget_changed(aw_store *s, bool now_too) {
  if (s->sts) aw_sts_budget_changed(s->sts, now_too);
  if (s->s3) aw_s3_budget_changed(s->s3, now_too);
}

static void s3_close(aw_store *s) {
  aw_sts_free(s->sts);
  s->sts = NULL;
  aw_s3_free(s->s3);
  s->s3 = NULL;
  wipe(&s->access);
  wipe(&s->secret);
  wipe(&s->token);
  wipe(&s->web_token);
  aw_creds_plan_free(&s->plan);
  free(s->ca_path);
}

static const store_kind s3_kind = {
    .type = "s3",
    .holds_folders = true,
    .key = s3_key,
    .child_key = s3_child_key,
    .where = s3_where,
    .location_member = "key",
    .load_credentials = s3_load_credentials,
    .connect = s3_connect,
    .connect_stop = s3_connect_stop,
    .prepare = s3_prepare,
    .put = s3_put,
    .cancel = s3_cancel,
    .budget_changed = s3_budget_changed,
    .close = s3_close,
};

/* ---- Artifactory ---- */

static char *artifactory_key(const aw_store *s, const char *upload_name) {
  return upload_name ? aw_artifactory_join_url(s->url, upload_name) : strdup(s->url);
}

static char *artifactory_child_key(const aw_store *s, const char *key, const char *rel) {
  (void)s;
  return aw_artifactory_join_url(key, rel);
}

static char *artifactory_where(const aw_store *s, const char *key) {
  (void)s;
  return strdup(key ? key : "?");
}

static int artifactory_load_credentials(aw_store *s, const aw_config *cfg, char **err) {
  char *why = NULL;
  if (read_secret(cfg, s->username_ref, "username", &s->username, &why) ||
      read_secret(cfg, s->password_ref, "password", &s->password, &why)) {
    *err = aw_strdupf("Artifactory credentials: %s", why ? why : "out of memory");
    free(why);
    return -1;
  }
  return 0;
}

static aw_store_connect_status artifactory_connect(aw_store *s, char **err) {
  /* Argo's driver uses Go's HTTP client, which takes a private CA from
   * SSL_CERT_FILE; so does this one. */
  const char *ca = getenv("SSL_CERT_FILE");
  aw_artifactory_config c = {
      .username = s->username.data,
      .password = s->password.data,
      .ca_file = ca && *ca ? ca : NULL,
      .user_agent = USER_AGENT,
      .budget = s->budget,
  };
  char *why = NULL;
  s->art = aw_artifactory_new(s->loop, s->http, &c, &why);
  wipe(&s->username);
  wipe(&s->password);
  if (s->art) return AW_STORE_CONNECTED;
  *err = aw_strdupf("cannot set up the Artifactory client: %s", why ? why : "out of memory");
  free(why);
  return AW_STORE_CONNECT_FAILED;
}

static void artifactory_done(const aw_artifactory_result *r, void *arg) {
  aw_store_result res = {
      .status = r->status == AW_ARTIFACTORY_OK          ? AW_STORE_OK
                : r->status == AW_ARTIFACTORY_CANCELLED ? AW_STORE_CANCELLED
                                                        : AW_STORE_FAILED,
      .message = r->message,
      .attempts = r->attempts,
      .bytes = r->bytes,
  };
  op_finish(arg, &res);
}

static bool artifactory_prepare(aw_store *s, aw_store_op *op) {
  (void)s;
  (void)op;
  return false;
}

static void *artifactory_put(aw_store *s, aw_store_op *op, const char *key, const char *base_dir,
                             const char *rel, bool nofollow) {
  return aw_artifactory_put_file(s->art, key, base_dir, rel, nofollow, artifactory_done, op);
}

static void artifactory_cancel(void *inner) { aw_artifactory_cancel(inner); }

static void artifactory_budget_changed(aw_store *s, bool now_too) {
  if (s->art) aw_artifactory_budget_changed(s->art, now_too);
}

static void artifactory_close(aw_store *s) {
  aw_artifactory_free(s->art);
  s->art = NULL;
  wipe(&s->username);
  wipe(&s->password);
}

static const store_kind artifactory_kind = {
    .type = "artifactory",
    .holds_folders = false,
    .key = artifactory_key,
    .child_key = artifactory_child_key,
    .where = artifactory_where,
    .location_member = "url",
    .load_credentials = artifactory_load_credentials,
    .connect = artifactory_connect,
    .prepare = artifactory_prepare,
    .put = artifactory_put,
    .cancel = artifactory_cancel,
    .budget_changed = artifactory_budget_changed,
    .close = artifactory_close,
};

/* ---- making stores ---- */

static aw_store *store_new(const store_kind *kind) {
  aw_store *s = calloc(1, sizeof(*s));
  if (s) s->kind = kind;
  return s;
}

/* url and credentials of an artifactory location; where names it. */
static aw_store *artifactory_store(const char *where, const char *url, const aw_secret_ref *user,
                                   const aw_secret_ref *pass, char **why) {
  const char *bad = NULL;
  if (!url) {
    *why = aw_strdupf("%s.url is not set", where);
    return NULL;
  }
  if (aw_artifactory_check_url(url, &bad) != 0) {
    *why = aw_strdupf("%s.url: %s", where, bad);
    return NULL;
  }
  if (!user->name != !pass->name) {
    *why = aw_strdupf("%s needs both usernameSecret and passwordSecret, or neither", where);
    return NULL;
  }
  aw_store *s = store_new(&artifactory_kind);
  if (!s) return NULL;
  s->url = url;
  s->username_ref = user->name ? user : NULL;
  s->password_ref = pass->name ? pass : NULL;
  return s;
}

static aw_store *s3_store(const aw_archive_location *l, aw_getenv_fn env, const char *pod_name,
                          char **why) {
  if (!l->bucket) {
    *why = aw_strdupf("archiveLocation.s3.bucket is not set");
    return NULL;
  }
  aw_creds_plan plan;
  char *err = NULL;
  if (aw_creds_plan_make(l, env, pod_name, &plan, &err) != 0) {
    *why = aw_strdupf("S3 credentials: %s", err ? err : "out of memory");
    free(err);
    return NULL;
  }
  uint64_t part_size;
  unsigned threads;
  if (aw_s3_parse_upload_settings(env("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB"),
                                  env("ARTIFACT_S3_UPLOAD_THREADS"), &part_size, &threads,
                                  &err) != 0) {
    aw_creds_plan_free(&plan);
    *why = err ? err : strdup("bad upload settings");
    return NULL;
  }
  aw_store *s = store_new(&s3_kind);
  if (!s) {
    aw_creds_plan_free(&plan);
    return NULL;
  }
  s->loc = l;
  s->plan = plan;
  s->part_size = part_size;
  s->threads = threads;
  return s;
}

aw_store *aw_store_for_archive_location(const aw_archive_location *l, aw_getenv_fn env,
                                        const char *pod_name, char **why) {
  *why = NULL;
  aw_store *s = NULL;
  if (!l->type)
    *why = aw_strdupf("no artifact repository is configured (template.archiveLocation)");
  else if (strcmp(l->type, "s3") == 0)
    s = s3_store(l, env, pod_name, why);
  else if (strcmp(l->type, "artifactory") == 0)
    s = artifactory_store("archiveLocation.artifactory", l->url, &l->username, &l->password, why);
  else
    *why = aw_strdupf("artifact repository type %s is not supported (only s3 and artifactory)", l->type);
  if (!s && !*why) *why = strdup("out of memory");
  return s;
}

aw_store *aw_store_for_own_artifactory(const aw_output_artifact *art, char **why) {
  *why = NULL;
  aw_store *s = artifactory_store("the artifact's artifactory", art->own_url, &art->own_username,
                                  &art->own_password, why);
  if (!s && !*why) *why = strdup("out of memory");
  return s;
}

/* ---- dispatch ---- */

const char *aw_store_type(const aw_store *s) { return s->kind->type; }

char *aw_store_key(const aw_store *s, const char *upload_name) {
  return s->kind->key(s, upload_name);
}

char *aw_store_child_key(const aw_store *s, const char *key, const char *rel) {
  return s->kind->child_key(s, key, rel);
}

char *aw_store_where(const aw_store *s, const char *key) { return s->kind->where(s, key); }

cJSON *aw_store_location(const aw_store *s, const char *key) {
  cJSON *loc = cJSON_CreateObject();
  if (loc && !cJSON_AddStringToObject(loc, s->kind->location_member, key)) {
    cJSON_Delete(loc);
    loc = NULL;
  }
  return loc;
}

bool aw_store_holds_folders(const aw_store *s) { return s->kind->holds_folders; }

int aw_store_load_credentials(aw_store *s, const aw_config *cfg, char **err) {
  *err = NULL;
  return s->kind->load_credentials(s, cfg, err);
}

aw_store_connect_status aw_store_connect(aw_store *s, uv_loop_t *loop, aw_http *http,
                                         const aw_budget *budget, aw_store_cb cb, void *arg,
                                         char **err) {
  *err = NULL;
  s->loop = loop;
  s->http = http;
  s->budget = budget;
  s->connect_cb = cb;
  s->connect_arg = arg;
  aw_store_connect_status st = s->kind->connect(s, err);
  if (st == AW_STORE_CONNECT_FAILED && !*err) *err = strdup("out of memory");
  return st;
}

bool aw_store_connect_stop(aw_store *s, const char *cause, char **why) {
  *why = NULL;
  return s->kind->connect_stop && s->kind->connect_stop(s, cause, why);
}

static aw_store_op *op_new(aw_store *s, aw_store_cb cb, void *arg) {
  aw_store_op *op = calloc(1, sizeof(*op));
  if (!op) return NULL;
  op->store = s;
  op->cb = cb;
  op->arg = arg;
  op->next = s->ops;
  if (s->ops) s->ops->prev = op;
  s->ops = op;
  return op;
}

static void op_drop(aw_store_op *op) {
  op_unlink(op);
  free(op);
}

bool aw_store_prepare(aw_store *s, aw_store_cb cb, void *arg, aw_store_op **out) {
  *out = NULL;
  aw_store_op *op = op_new(s, cb, arg);
  if (!op) return false;
  if (!s->kind->prepare(s, op) || !op->inner) {
    op_drop(op);
    return false;
  }
  *out = op;
  return true;
}

aw_store_op *aw_store_put(aw_store *s, const char *key, const char *base_dir, const char *rel,
                          bool nofollow, aw_store_cb cb, void *arg) {
  aw_store_op *op = op_new(s, cb, arg);
  if (!op) return NULL;
  op->inner = s->kind->put(s, op, key, base_dir, rel, nofollow);
  if (!op->inner) {
    op_drop(op);
    return NULL;
  }
  return op;
}

void aw_store_cancel(aw_store_op *op) {
  if (op) op->store->kind->cancel(op->inner);
}

void aw_store_budget_changed(aw_store *s, bool now_too) { s->kind->budget_changed(s, now_too); }

void aw_store_free(aw_store *s) {
  if (!s) return;
  s->kind->close(s); /* stops every operation without a callback */
  while (s->ops) op_drop(s->ops);
  free(s);
}
