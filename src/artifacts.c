#include "argowait/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/collect.h"
#include "argowait/archive.h"
#include "argowait/log.h"
#include "argowait/s3.h"
#include "argowait/safefile.h"
#include "argowait/sts.h"

#define SECRET_CAP (64u * 1024u)
#define ABORT_WAIT_MAX_MS 1000u
#define SCRATCH_ARTIFACTS "outputs/artifacts" /* under /tmp/argo */

typedef enum { IT_PENDING, IT_DONE } item_state;

typedef struct {
  const aw_output_artifact *art; /* NULL for logs */
  const char *container;         /* logs */
  char *name;                    /* artifact name, or "<c>-logs" */
  char *key;
  item_state state;
  bool saved;
  /* Set by staging (pool). */
  char *base, *rel;  /* what to upload */
  bool missing;      /* source not there */
  char *stage_err;   /* why it cannot be uploaded */
} item;

struct aw_artifacts {
  uv_loop_t *loop;
  aw_http *http;
  const aw_config *cfg;
  const aw_template *tmpl;
  const aw_budget *budget;
  aw_artifacts_done_cb cb;
  void *arg;

  item *items;
  size_t count;
  size_t cur;

  /* Credentials, read on the pool, wiped once given to aw_s3. */
  aw_bytes access, secret, token;
  /* Where they come from: static keys, or STS with the web identity token. */
  aw_creds_plan plan;
  char *plan_err;
  aw_bytes web_token;
  aw_sts *sts;
  char *ca_path;
  char *cred_err;
  uint64_t part_size;
  unsigned threads;

  aw_s3 *s3;
  aw_s3_op *op;
  uv_work_t work;
  bool pool_pending;
  uv_timer_t timer;
  bool timer_open;

  cJSON *saved;
  aw_reasons reasons;
  bool done, reserve, freed;
};

/* ---- small helpers ---- */

static char *dupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *dupf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) s = NULL;
  va_end(ap);
  return s;
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* A name usable as one path component. */
static bool safe_component(const char *s) {
  return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static char *join_key(const char *prefix, const char *name) {
  if (!prefix || !*prefix) return strdup(name);
  size_t n = strlen(prefix);
  while (n && prefix[n - 1] == '/') n--;
  if (!n) return strdup(name);
  return dupf("%.*s/%s", (int)n, prefix, name);
}

static const char *bucket(const aw_artifacts *a) {
  return a->tmpl->location.bucket ? a->tmpl->location.bucket : "";
}

static void wipe(aw_bytes *b) {
  if (b->data) explicit_bzero(b->data, b->len);
  aw_bytes_free(b);
}

bool aw_artifacts_needed(const aw_template *tmpl) {
  if (tmpl->archive_logs) return true;
  for (size_t i = 0; i < tmpl->artifact_count; i++)
    if (tmpl->artifacts[i].path) return true;
  return false;
}

/* ---- ending ---- */

static void release(aw_artifacts *a) {
  if (!a->freed || a->pool_pending || a->timer_open) return;
  for (size_t i = 0; i < a->count; i++) {
    free(a->items[i].name);
    free(a->items[i].key);
    free(a->items[i].base);
    free(a->items[i].rel);
    free(a->items[i].stage_err);
  }
  free(a->items);
  wipe(&a->access);
  wipe(&a->secret);
  wipe(&a->token);
  wipe(&a->web_token);
  aw_creds_plan_free(&a->plan);
  free(a->plan_err);
  free(a->ca_path);
  free(a->cred_err);
  cJSON_Delete(a->saved);
  aw_reasons_free(&a->reasons);
  free(a);
}

static void item_reason(aw_artifacts *a, item *it, const char *why) {
  it->state = IT_DONE;
  if (it->art)
    aw_reasons_add(&a->reasons, "output artifact \"%s\" (s3://%s/%s): %s", it->name, bucket(a),
                   it->key ? it->key : "?", why);
  else
    aw_reasons_add(&a->reasons, "logs of container %s (s3://%s/%s): %s", it->container, bucket(a),
                   it->key ? it->key : "?", why);
}

static void finish(aw_artifacts *a) {
  if (a->done) return;
  a->done = true;
  uv_timer_stop(&a->timer);
  for (size_t i = 0; i < a->count; i++)
    if (a->items[i].state == IT_PENDING)
      item_reason(a, &a->items[i],
                  a->reserve ? "not saved: the grace period's reserve began first" : "not saved");
  cJSON *saved = a->saved;
  a->saved = NULL;
  unsigned n = (unsigned)cJSON_GetArraySize(saved);
  aw_info("artifacts: %u saved, %zu not saved", n, a->reasons.count);
  a->cb(saved, &a->reasons, a->arg);
}

static void on_timer(uv_timer_t *t) {
  aw_artifacts *a = t->data;
  if (!a->freed) finish(a);
}

static void on_timer_closed(uv_handle_t *h) {
  aw_artifacts *a = h->data;
  a->timer_open = false;
  release(a);
}

/* ---- reporting a saved artifact ---- */

static cJSON *template_artifact(const aw_artifacts *a, const char *name) {
  cJSON *arr = cJSON_GetObjectItemCaseSensitive(a->tmpl->outputs, "artifacts");
  cJSON *el;
  cJSON_ArrayForEach(el, arr) {
    cJSON *n = cJSON_GetObjectItemCaseSensitive(el, "name");
    if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return el;
  }
  return NULL;
}

static void record_saved(aw_artifacts *a, item *it) {
  cJSON *obj = NULL;
  if (it->art) {
    cJSON *tmpl_el = template_artifact(a, it->name);
    obj = tmpl_el ? cJSON_Duplicate(tmpl_el, 1) : NULL;
  } else {
    obj = cJSON_CreateObject();
    if (obj) cJSON_AddStringToObject(obj, "name", it->name);
  }
  if (obj && !(it->art && it->art->own_key)) {
    cJSON *loc = cJSON_CreateObject();
    if (loc) cJSON_AddStringToObject(loc, "key", it->key);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "s3");
    if (!loc || !cJSON_AddItemToObject(obj, "s3", loc)) {
      cJSON_Delete(loc);
      cJSON_Delete(obj);
      obj = NULL;
    }
  }
  if (!obj || !cJSON_AddItemToArray(a->saved, obj)) {
    cJSON_Delete(obj);
    item_reason(a, it, "saved, but cannot be reported (out of memory)");
    return;
  }
  it->state = IT_DONE;
  it->saved = true;
}

/* ---- staging (thread pool) ---- */

static int mkdirs(const char *path) {
  char *p = strdup(path);
  if (!p) return -ENOMEM;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      int e = errno;
      free(p);
      return -e;
    }
    *s = '/';
  }
  int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -errno : 0;
  free(p);
  return rc;
}

/* 1: regular file, 2: folder, or a negative errno. */
static int kind_beneath(const char *base, const char *rel) {
  int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return -errno;
  int fd = aw_open_beneath(dfd, rel);
  close(dfd);
  if (fd >= 0) {
    close(fd);
    return 1;
  }
  return fd == -EISDIR ? 2 : fd;
}

static void set_err(item *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(item *it, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  free(it->stage_err);
  if (vasprintf(&it->stage_err, fmt, ap) < 0) it->stage_err = NULL;
  va_end(ap);
  if (!it->stage_err) it->stage_err = strdup("out of memory");
}

static void archive_warnings(const char *name, aw_archive_stats *st) {
  for (size_t i = 0; i < st->warnings.count; i++)
    aw_warn("output artifact \"%s\": %s", name, st->warnings.items[i]);
}

/* Runs an archive function's result into the item. */
static bool archive_ok(item *it, int rc, char *err, aw_archive_stats *st) {
  archive_warnings(it->name, st);
  aw_archive_stats_free(st);
  if (rc != 0) set_err(it, "%s", err ? err : aw_safefile_strerror(rc));
  free(err);
  return rc == 0;
}

static void stage_logs(const aw_artifacts *a, item *it) {
  it->base = aw_config_path(a->cfg, AW_PATH_CTR_DIR, it->container);
  it->rel = strdup("combined");
  if (!it->base || !it->rel) return set_err(it, "out of memory");
  int k = kind_beneath(it->base, it->rel);
  if (k == -ENOENT) it->missing = true;
  else if (k < 0) set_err(it, "%s/%s/combined: %s", AW_PATH_CTR_DIR, it->container, aw_safefile_strerror(k));
  else if (k != 1) set_err(it, "%s/%s/combined is not a regular file", AW_PATH_CTR_DIR, it->container);
}

/* A base-image artifact as files: the emissary's .tgz (src_base/src_rel)
 * untarred into folder, and the source re-pointed at what it held. */
static int untar_staged(item *it, const char *folder, const char *clean, char **src_base,
                        char **src_rel) {
  int rc = mkdirs(folder);
  if (rc != 0) {
    set_err(it, "cannot create a scratch folder: %s", strerror(-rc));
    return -1;
  }
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  char *tgz = dupf("%s/%s", *src_base, *src_rel);
  rc = tgz ? aw_archive_untar(tgz, folder, &st, &err) : -ENOMEM;
  free(tgz);
  if (!archive_ok(it, rc, err, &st)) return -1;
  char *base = strdup(folder);
  char *rel = strdup(base_name(clean));
  if (!base || !rel) {
    free(base);
    free(rel);
    set_err(it, "out of memory");
    return -1;
  }
  free(*src_base);
  free(*src_rel);
  *src_base = base;
  *src_rel = rel;
  return 0;
}

static void stage_artifact(const aw_artifacts *a, item *it) {
  const aw_output_artifact *art = it->art;
  char *clean = aw_path_clean(art->path);
  if (!clean || strcmp(clean, "/") == 0) {
    free(clean);
    return set_err(it, "path %s cannot be saved", art->path);
  }
  char *scratch = aw_config_path(a->cfg, AW_PATH_SCRATCH, SCRATCH_ARTIFACTS);
  char *src_base = NULL, *src_rel = NULL, *tmp = NULL, *tmp2 = NULL;
  bool base_image = true;
  int k = -ENOENT;
  int idx = aw_template_find_mirror(a->tmpl, clean);
  if (!scratch) goto oom;
  if (idx >= 0) {
    const aw_mirrored_path *m = &a->tmpl->mirrored[idx];
    if (aw_mirror_source(a->cfg, a->tmpl, clean, &src_base, &src_rel) != 0) goto oom;
    k = kind_beneath(src_base, src_rel);
    base_image = k == -ENOENT && m->from_input_artifact && m->optional;
    if (base_image) {
      free(src_base);
      free(src_rel);
      src_base = src_rel = NULL;
    }
  }
  if (base_image) {
    src_base = aw_config_path(a->cfg, AW_PATH_OUTPUT_ARTIFACTS, NULL);
    src_rel = dupf("%s.tgz", clean + 1);
    if (!src_base || !src_rel) goto oom;
    k = kind_beneath(src_base, src_rel);
    if (k == 2) k = -EISDIR;
  }
  if (k == -ENOENT) {
    it->missing = true;
    goto out;
  }
  if (k < 0) {
    set_err(it, "%s: %s", art->path, aw_safefile_strerror(k));
    goto out;
  }
  int rc;
  if ((rc = mkdirs(scratch)) != 0) {
    set_err(it, "cannot create the scratch folder %s%s: %s", AW_PATH_SCRATCH, "/" SCRATCH_ARTIFACTS,
            strerror(-rc));
    goto out;
  }
  aw_archive_stats st;
  char *err = NULL;
  switch (art->strategy) {
  case AW_STRATEGY_TAR:
    if (base_image) { /* the emissary's tgz, as is */
      it->base = src_base;
      it->rel = src_rel;
      src_base = src_rel = NULL;
      break;
    }
    aw_archive_stats_init(&st);
    if (!(tmp = dupf("%s/%s.tgz", scratch, it->name))) goto oom;
    if (!archive_ok(it, aw_archive_tgz(src_base, src_rel, tmp, art->compression_level, &st, &err),
                    err, &st))
      break;
    it->base = scratch;
    it->rel = dupf("%s.tgz", it->name);
    scratch = NULL;
    break;
  case AW_STRATEGY_ZIP:
    if (base_image) { /* untar into scratch, zip that */
      if (!(tmp2 = dupf("%s/%s.d", scratch, it->name))) goto oom;
      if (untar_staged(it, tmp2, clean, &src_base, &src_rel) != 0) break;
    }
    aw_archive_stats_init(&st);
    if (!(tmp = dupf("%s/%s.zip", scratch, it->name))) goto oom;
    if (!archive_ok(it, aw_archive_zip(src_base, src_rel, tmp, &st, &err), err, &st)) break;
    it->base = scratch;
    it->rel = dupf("%s.zip", it->name);
    scratch = NULL;
    break;
  case AW_STRATEGY_NONE:
    if (base_image) { /* untar into scratch/<name>, upload the one file */
      if (!(tmp2 = dupf("%s/%s", scratch, it->name))) goto oom;
      if (untar_staged(it, tmp2, clean, &src_base, &src_rel) != 0) break;
      k = kind_beneath(src_base, src_rel);
    }
    if (k == 2) {
      set_err(it, "archive none of a folder is not supported yet");
      break;
    }
    if (k != 1) {
      set_err(it, "%s: %s", art->path, k < 0 ? aw_safefile_strerror(k) : "not a regular file");
      break;
    }
    it->base = src_base;
    it->rel = src_rel;
    src_base = src_rel = NULL;
    break;
  }
  goto out;
oom:
  set_err(it, "out of memory");
out:
  if (it->stage_err == NULL && !it->missing && (!it->base || !it->rel)) set_err(it, "out of memory");
  free(clean);
  free(scratch);
  free(src_base);
  free(src_rel);
  free(tmp);
  free(tmp2);
}

static void stage_work(uv_work_t *w) {
  aw_artifacts *a = w->data;
  item *it = &a->items[a->cur];
  if (it->art) stage_artifact(a, it);
  else stage_logs(a, it);
}

/* ---- uploading, one item at a time ---- */

static void next_item(aw_artifacts *a);

static void stage_after(uv_work_t *w, int status);

static void put_done(const aw_s3_result *res, void *arg) {
  aw_artifacts *a = arg;
  a->op = NULL;
  if (a->done) return;
  item *it = &a->items[a->cur];
  if (res->status == AW_S3_OK) {
    aw_info("%s \"%s\" saved to s3://%s/%s (%llu bytes, %u parts, %u attempts)",
            it->art ? "output artifact" : "logs", it->name, bucket(a), it->key,
            (unsigned long long)res->bytes, res->parts, res->attempts);
    record_saved(a, it);
  } else if (res->status == AW_S3_CANCELLED) {
    item_reason(a, it, "not saved: the grace period's reserve began before the upload finished"
                       " (the upload was aborted)");
  } else {
    item_reason(a, it, res->message ? res->message : "upload failed");
  }
  a->cur++;
  next_item(a);
}

static void stage_after(uv_work_t *w, int status) {
  aw_artifacts *a = w->data;
  a->pool_pending = false;
  if (a->freed) return release(a);
  if (a->done) return;
  item *it = &a->items[a->cur];
  if (status != 0) {
    item_reason(a, it, "cancelled");
  } else if (it->missing) {
    it->state = IT_DONE;
    if (!it->art)
      aw_warn("logs of container %s were not archived: %s/%s/combined does not exist", it->container,
              AW_PATH_CTR_DIR, it->container);
    else if (it->art->optional)
      aw_warn("output artifact \"%s\" is optional and %s does not exist: not saved", it->name,
              it->art->path);
    else
      item_reason(a, it, "its file does not exist (not found)");
  } else if (it->stage_err) {
    item_reason(a, it, it->stage_err);
  } else if (a->reserve) {
    item_reason(a, it, "not saved: the grace period's reserve began first");
  } else {
    aw_info("uploading %s \"%s\" to s3://%s/%s", it->art ? "output artifact" : "logs", it->name,
            bucket(a), it->key);
    a->op = aw_s3_put_file(a->s3, it->key, it->base, it->rel, put_done, a);
    if (a->op) return;
    item_reason(a, it, "cannot start the upload");
  }
  a->cur++;
  next_item(a);
}

static void next_item(aw_artifacts *a) {
  if (a->done) return;
  while (a->cur < a->count && a->items[a->cur].state != IT_PENDING) a->cur++;
  if (a->cur >= a->count || a->reserve) return finish(a);
  a->work.data = a;
  if (uv_queue_work(a->loop, &a->work, stage_work, stage_after) != 0) {
    item_reason(a, &a->items[a->cur], "cannot start staging");
    a->cur++;
    return next_item(a);
  }
  a->pool_pending = true;
}

/* ---- the store ---- */

static void all_reason(aw_artifacts *a, const char *why) {
  for (size_t i = 0; i < a->count; i++)
    if (a->items[i].state == IT_PENDING) item_reason(a, &a->items[i], why);
}

static void bucket_done(const aw_s3_result *res, void *arg) {
  aw_artifacts *a = arg;
  a->op = NULL;
  if (a->done) return;
  if (res->status != AW_S3_OK) {
    char *why = dupf("the bucket is not usable: %s", res->message ? res->message : "?");
    all_reason(a, why ? why : "the bucket is not usable");
    free(why);
    return finish(a);
  }
  if (res->created) aw_info("created bucket %s", bucket(a));
  next_item(a);
}

/* Reads a secret file (kubelet-managed Secret mount: symlinks by design). */
static int read_secret(aw_artifacts *a, const aw_secret_ref *ref, const char *what, aw_bytes *out) {
  if (!ref->name) return 0;
  if (!safe_component(ref->name) || !safe_component(ref->key)) {
    a->cred_err = dupf("the %s secret name or key is not a plain name", what);
    return -1;
  }
  char *rest = dupf("%s/%s", ref->name, ref->key);
  char *path = rest ? aw_config_path(a->cfg, AW_PATH_SECRETS, rest) : NULL;
  free(rest);
  int rc = path ? aw_read_trusted(path, SECRET_CAP, out) : -ENOMEM;
  free(path);
  if (rc != 0) {
    a->cred_err = dupf("cannot read the %s from %s/%s/%s: %s", what, AW_PATH_SECRETS, ref->name,
                       ref->key, aw_safefile_strerror(rc));
    return -1;
  }
  while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
    out->data[--out->len] = '\0';
  if (!out->len) {
    a->cred_err = dupf("the %s in %s/%s/%s is empty", what, AW_PATH_SECRETS, ref->name, ref->key);
    return -1;
  }
  if (memchr(out->data, '\0', out->len)) {
    a->cred_err = dupf("the %s in %s/%s/%s holds a NUL byte", what, AW_PATH_SECRETS, ref->name,
                       ref->key);
    return -1;
  }
  return 0;
}

static void creds_work(uv_work_t *w) {
  aw_artifacts *a = w->data;
  const aw_archive_location *l = &a->tmpl->location;
  if (read_secret(a, &l->access_key, "access key", &a->access) ||
      read_secret(a, &l->secret_key, "secret key", &a->secret) ||
      read_secret(a, &l->session_token, "session token", &a->token))
    return;
  if (a->plan.kind != AW_CREDS_STATIC &&
      aw_sts_read_token(a->plan.token_file, &a->web_token, &a->cred_err) != 0)
    return;
  if (l->ca.name) {
    if (!safe_component(l->ca.name) || !safe_component(l->ca.key)) {
      a->cred_err = dupf("the CA secret name or key is not a plain name");
      return;
    }
    char *rest = dupf("%s/%s", l->ca.name, l->ca.key);
    a->ca_path = rest ? aw_config_path(a->cfg, AW_PATH_SECRETS, rest) : NULL;
    free(rest);
    struct stat st;
    if (!a->ca_path || stat(a->ca_path, &st) != 0)
      a->cred_err = dupf("cannot read the CA from %s/%s/%s", AW_PATH_SECRETS, l->ca.name, l->ca.key);
  }
}

static void start_store(aw_artifacts *a, const char *access, const char *secret, const char *token);

static void sts_done(const aw_sts_result *res, void *arg) {
  aw_artifacts *a = arg;
  aw_sts *sts = a->sts;
  a->sts = NULL;
  if (!a->done && res->status == AW_STS_OK) {
    start_store(a, res->access_key_id, res->secret_access_key, res->session_token);
  } else if (!a->done) {
    char *why = dupf("S3 credentials: %s", res->message ? res->message : "STS failed");
    all_reason(a, why ? why : "S3 credentials: STS failed");
    free(why);
    finish(a);
  }
  aw_sts_free(sts); /* after: the credentials live in it until then */
}

static void creds_after(uv_work_t *w, int status) {
  aw_artifacts *a = w->data;
  a->pool_pending = false;
  if (a->freed) return release(a);
  if (a->done) return;
  if (status != 0 || a->cred_err) {
    char *why = dupf("S3 credentials: %s", a->cred_err ? a->cred_err : "cancelled");
    all_reason(a, why ? why : "S3 credentials cannot be read");
    free(why);
    return finish(a);
  }
  if (a->plan.kind != AW_CREDS_STATIC) {
    a->sts = aw_sts_start(a->loop, a->http, a->budget, &a->plan, a->web_token.data,
                          "argowait (argo-executor wait)", sts_done, a);
    wipe(&a->web_token);
    if (a->sts) return;
    all_reason(a, "S3 credentials: cannot start the STS request");
    return finish(a);
  }
  start_store(a, a->access.data, a->secret.data, a->token.data);
}

/* The S3 client with the credentials, then the bucket check or the first
 * upload. */
static void start_store(aw_artifacts *a, const char *access, const char *secret, const char *token) {
  const aw_archive_location *l = &a->tmpl->location;
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
      .ca_file = a->ca_path,
      .user_agent = "argowait (argo-executor wait)",
      .part_size = a->part_size,
      .threads = a->threads,
      .budget = a->budget,
  };
  char *err = NULL;
  a->s3 = aw_s3_new(a->loop, a->http, &c, &err);
  wipe(&a->access);
  wipe(&a->secret);
  wipe(&a->token);
  if (!a->s3) {
    char *why = dupf("cannot set up the S3 client: %s", err ? err : "?");
    all_reason(a, why ? why : "cannot set up the S3 client");
    free(why);
    free(err);
    return finish(a);
  }
  if (l->create_bucket) {
    a->op = aw_s3_ensure_bucket(a->s3, true, bucket_done, a);
    if (a->op) return;
    all_reason(a, "cannot check the bucket");
    return finish(a);
  }
  next_item(a);
}

/* ---- start ---- */

static const char *getenv_for_plan(const char *name) { return getenv(name); }

/* Checks that need no file: unsupported locations and credentials. */
static void precheck(aw_artifacts *a) {
  const aw_archive_location *l = &a->tmpl->location;
  if (l->type && strcmp(l->type, "s3") == 0 &&
      aw_creds_plan_make(l, getenv_for_plan, a->cfg->pod_name, &a->plan, &a->plan_err) != 0 &&
      !a->plan_err)
    a->plan_err = strdup("out of memory");
  for (size_t i = 0; i < a->count; i++) {
    item *it = &a->items[i];
    const aw_output_artifact *art = it->art;
    if (art && art->own_type && strcmp(art->own_type, "s3") != 0) {
      char why[160];
      bool input_only = !strcmp(art->own_type, "git") || !strcmp(art->own_type, "http") ||
                        !strcmp(art->own_type, "raw");
      snprintf(why, sizeof(why), input_only ? "a %s location cannot hold an output artifact"
                                            : "saving to a %s location is not supported yet",
               art->own_type);
      item_reason(a, it, why);
    } else if (art && art->own_s3_full) {
      item_reason(a, it, "an artifact's own S3 bucket or endpoint is not supported yet");
    } else if (art && art->name && !safe_component(art->name)) {
      item_reason(a, it, "the artifact's name is not usable as a file name");
    } else if (!l->type) {
      item_reason(a, it, "no artifact repository is configured (template.archiveLocation)");
    } else if (strcmp(l->type, "s3") != 0) {
      char why[160];
      snprintf(why, sizeof(why), "artifact repository type %s is not supported yet", l->type);
      item_reason(a, it, why);
    } else if (!l->bucket) {
      item_reason(a, it, "archiveLocation.s3.bucket is not set");
    } else if (a->plan_err) {
      char *why = dupf("S3 credentials: %s", a->plan_err);
      item_reason(a, it, why ? why : a->plan_err);
      free(why);
    }
  }
  char *err = NULL;
  if (aw_s3_parse_upload_settings(getenv("ARTIFACT_S3_UPLOAD_PART_SIZE_MIB"),
                                  getenv("ARTIFACT_S3_UPLOAD_THREADS"), &a->part_size, &a->threads,
                                  &err) != 0) {
    char *why = dupf("%s", err ? err : "bad upload settings");
    all_reason(a, why ? why : "bad upload settings");
    free(why);
  }
  free(err);
}

static int add_item(aw_artifacts *a, const aw_output_artifact *art, const char *container) {
  item *it = &a->items[a->count++];
  it->art = art;
  it->container = container;
  const char *prefix = a->tmpl->location.key;
  if (art) {
    it->name = strdup(art->name);
    if (art->own_key) {
      it->key = strdup(art->own_key);
    } else {
      char *clean = aw_path_clean(art->path);
      char *upload = NULL;
      if (clean) {
        switch (art->strategy) {
        case AW_STRATEGY_TAR: upload = dupf("%s.tgz", art->name); break;
        case AW_STRATEGY_ZIP: upload = dupf("%s.zip", art->name); break;
        case AW_STRATEGY_NONE: upload = strdup(base_name(clean)); break;
        }
      }
      it->key = upload ? join_key(prefix, upload) : NULL;
      free(upload);
      free(clean);
    }
  } else {
    it->name = dupf("%s-logs", container);
    char *upload = dupf("%s.log", container);
    it->key = upload ? join_key(prefix, upload) : NULL;
    free(upload);
  }
  return it->name && it->key ? 0 : -1;
}

aw_artifacts *aw_artifacts_start(uv_loop_t *loop, aw_http *http, const aw_config *cfg,
                                 const aw_template *tmpl, const aw_budget *budget,
                                 aw_artifacts_done_cb done_cb, void *arg) {
  aw_artifacts *a = calloc(1, sizeof(*a));
  if (!a) return NULL;
  a->loop = loop;
  a->http = http;
  a->cfg = cfg;
  a->tmpl = tmpl;
  a->budget = budget;
  a->cb = done_cb;
  a->arg = arg;
  aw_reasons_init(&a->reasons);
  a->saved = cJSON_CreateArray();
  size_t n = tmpl->artifact_count + (tmpl->archive_logs ? tmpl->main_container_count : 0);
  a->items = calloc(n ? n : 1, sizeof(*a->items));
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  a->timer_open = true;
  bool oom = !a->saved || !a->items;
  for (size_t i = 0; !oom && i < tmpl->artifact_count; i++)
    if (tmpl->artifacts[i].path && add_item(a, &tmpl->artifacts[i], NULL) != 0) oom = true;
  for (size_t i = 0; !oom && tmpl->archive_logs && i < tmpl->main_container_count; i++)
    if (add_item(a, NULL, tmpl->main_containers[i]) != 0) oom = true;
  if (oom) {
    a->done = true; /* nothing to call back with */
    aw_artifacts_free(a);
    return NULL;
  }
  for (size_t i = 0; i < tmpl->artifact_count; i++)
    if (!tmpl->artifacts[i].path)
      aw_info("output artifact \"%s\" has no path: nothing to save", tmpl->artifacts[i].name);
  precheck(a);
  bool any = false;
  for (size_t i = 0; i < a->count; i++) any = any || a->items[i].state == IT_PENDING;
  a->work.data = a;
  if (any && uv_queue_work(loop, &a->work, creds_work, creds_after) == 0) {
    a->pool_pending = true;
  } else {
    if (any) all_reason(a, "cannot start reading the S3 credentials");
    uv_timer_start(&a->timer, on_timer, 0, 0);
  }
  return a;
}

void aw_artifacts_reserve(aw_artifacts *a) {
  if (!a || a->done || a->reserve) return;
  a->reserve = true;
  if (a->sts) { /* no credentials yet: nothing can be saved now */
    char *progress = aw_sts_progress(a->sts);
    char *why = dupf("S3 credentials: the grace period's reserve began while getting them from %s",
                     progress ? progress : "STS");
    all_reason(a, why ? why : "S3 credentials: the reserve began while getting them from STS");
    free(why);
    free(progress);
    aw_sts_free(a->sts);
    a->sts = NULL;
  }
  if (a->s3) aw_s3_budget_changed(a->s3, true);
  if (a->op) aw_s3_cancel(a->op);
  /* Give an abort a moment to land; then report whatever happens. */
  uint64_t left = aw_budget_clip(a->budget, uv_now(a->loop), UINT64_MAX);
  uint64_t wait = left / 4 < ABORT_WAIT_MAX_MS ? left / 4 : ABORT_WAIT_MAX_MS;
  if (!a->op) wait = 0;
  aw_info("artifacts: the reserve began; reporting what was saved%s",
          a->op ? " once the upload in flight is aborted" : "");
  uv_timer_start(&a->timer, on_timer, wait, 0);
}

void aw_artifacts_budget_changed(aw_artifacts *a) {
  if (a && a->sts && !a->done) aw_sts_budget_changed(a->sts, false);
  if (a && a->s3 && !a->done) aw_s3_budget_changed(a->s3, false);
}

bool aw_artifacts_busy(const aw_artifacts *a) { return a && a->pool_pending; }

void aw_artifacts_free(aw_artifacts *a) {
  if (!a || a->freed) return;
  a->freed = true;
  a->done = true;
  if (a->s3) aw_s3_free(a->s3);
  a->s3 = NULL;
  aw_sts_free(a->sts);
  a->sts = NULL;
  a->op = NULL;
  if (a->timer_open && !uv_is_closing((uv_handle_t *)&a->timer))
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
  release(a);
}
