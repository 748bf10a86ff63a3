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
#include "argowait/dirlist.h"
#include "argowait/log.h"
#include "argowait/safefile.h"
#include "argowait/store.h"
#include "argowait/strbuf.h"

#define ABORT_WAIT_MAX_MS 1000u
#define SCRATCH_ARTIFACTS "outputs/artifacts" /* under /tmp/argo */

typedef enum { IT_PENDING, IT_DONE } item_state;

typedef struct {
  const aw_output_artifact *art; /* NULL for logs */
  const char *container;         /* logs */
  char *name;                    /* artifact name, or "<c>-logs" */
  aw_store *store;               /* where it goes; NULL: see store_why */
  const char *store_why;         /* why there is no store (a slot's) */
  char *key;                     /* in its store (S3 key, Artifactory URL) */
  item_state state;
  bool saved;
  /* Set by staging (pool). */
  char *base, *rel;  /* what to upload */
  bool missing;      /* source not there */
  char *stage_err;   /* why it cannot be uploaded */
  /* A folder saved without an archive: one object per file, in order. */
  bool folder;
  aw_dirlist files;
  size_t file_cur;
} item;

/* A repository in use: the template's archiveLocation (slot 0) or an
 * artifact's own Artifactory location. */
typedef struct {
  aw_store *store; /* NULL: it cannot be used, see why */
  char *why;
  bool load;       /* some item needs it: read its credentials */
  char *cred_err;  /* set on the pool */
} store_slot;

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

  store_slot *slots;
  size_t slot_count;
  size_t conn_cur; /* the slot being connected (S3 may wait for STS) */
  size_t prep_cur; /* the slot being prepared (S3 createBucketIfNotPresent) */

  aw_store_op *op;
  uv_work_t work;
  bool pool_pending;
  uv_timer_t timer;
  bool timer_open;

  cJSON *saved;
  aw_reasons reasons;
  bool done, reserve, freed;
};

/* ---- small helpers ---- */

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* A name usable as one path component. */
static bool safe_component(const char *s) {
  return s && *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* "s3://bucket/key" or the URL of the item, for messages; malloc'd. */
static char *item_where(const item *it) {
  if (it->store && it->key) return aw_store_where(it->store, it->key);
  return it->art ? aw_strdupf("path %s", it->art->path) : NULL;
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
    aw_dirlist_free(&a->items[i].files);
  }
  free(a->items);
  for (size_t i = 0; i < a->slot_count; i++) {
    aw_store_free(a->slots[i].store);
    free(a->slots[i].why);
    free(a->slots[i].cred_err);
  }
  free(a->slots);
  cJSON_Delete(a->saved);
  aw_reasons_free(&a->reasons);
  free(a);
}

/* Also called from finish() while the pool may be staging this item: it
 * touches nothing that staging writes (the file list goes in release()). */
static void item_reason(aw_artifacts *a, item *it, const char *why) {
  it->state = IT_DONE;
  char *where = item_where(it);
  if (it->art)
    aw_reasons_add(&a->reasons, "output artifact \"%s\" (%s): %s", it->name,
                   where ? where : "?", why);
  else if (where)
    aw_reasons_add(&a->reasons, "logs of container %s (%s): %s", it->container, where, why);
  else
    aw_reasons_add(&a->reasons, "logs of container %s: %s", it->container, why);
  free(where);
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
  /* An artifact that names its own location is reported as written. */
  bool own = it->art && (it->art->own_key || it->art->own_url);
  if (obj && !own) {
    const char *type = aw_store_type(it->store);
    cJSON *loc = aw_store_location(it->store, it->key);
    cJSON_DeleteItemFromObjectCaseSensitive(obj, type);
    if (!loc || !cJSON_AddItemToObject(obj, type, loc)) {
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
  char *tgz = aw_strdupf("%s/%s", *src_base, *src_rel);
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

/* The files of a folder saved without an archive, listed beneath base
 * without following any symlink (P8); symlinks and special files are
 * skipped with a warning. */
static int list_folder(item *it, const char *base, const char *rel) {
  if (!aw_store_holds_folders(it->store)) {
    set_err(it, "%s is a folder, and an %s repository holds one file per artifact: save it with "
            "archive tar or zip", it->art->path, aw_store_type(it->store));
    return -1;
  }
  char *err = NULL;
  int rc = aw_dirlist_files(base, rel, NULL, &it->files, &err);
  for (size_t i = 0; i < it->files.warnings.count; i++)
    aw_warn("output artifact \"%s\": %s", it->name, it->files.warnings.items[i]);
  if (it->files.warnings_dropped)
    aw_warn("output artifact \"%s\": %u more files skipped", it->name, it->files.warnings_dropped);
  if (rc != 0) {
    set_err(it, "%s: %s", it->art->path, err ? err : aw_safefile_strerror(rc));
    aw_dirlist_free(&it->files);
  }
  free(err);
  return rc;
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
    src_rel = aw_strdupf("%s.tgz", clean + 1);
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
    if (!(tmp = aw_strdupf("%s/%s.tgz", scratch, it->name))) goto oom;
    if (!archive_ok(it, aw_archive_tgz(src_base, src_rel, tmp, art->compression_level, &st, &err),
                    err, &st))
      break;
    it->base = scratch;
    it->rel = aw_strdupf("%s.tgz", it->name);
    scratch = NULL;
    break;
  case AW_STRATEGY_ZIP:
    if (base_image) { /* untar into scratch, zip that */
      if (!(tmp2 = aw_strdupf("%s/%s.d", scratch, it->name))) goto oom;
      if (untar_staged(it, tmp2, clean, &src_base, &src_rel) != 0) break;
    }
    aw_archive_stats_init(&st);
    if (!(tmp = aw_strdupf("%s/%s.zip", scratch, it->name))) goto oom;
    if (!archive_ok(it, aw_archive_zip(src_base, src_rel, tmp, &st, &err), err, &st)) break;
    it->base = scratch;
    it->rel = aw_strdupf("%s.zip", it->name);
    scratch = NULL;
    break;
  case AW_STRATEGY_NONE:
    if (base_image) { /* untar into scratch/<name>, upload the one file */
      if (!(tmp2 = aw_strdupf("%s/%s", scratch, it->name))) goto oom;
      if (untar_staged(it, tmp2, clean, &src_base, &src_rel) != 0) break;
      k = kind_beneath(src_base, src_rel);
    }
    if (k == 2) { /* one object per regular file */
      if (list_folder(it, src_base, src_rel) != 0) break;
      it->folder = true;
      it->base = src_base;
      it->rel = src_rel;
      src_base = src_rel = NULL;
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
static void upload_next_file(aw_artifacts *a, item *it);

static const char *what_of(const item *it) { return it->art ? "output artifact" : "logs"; }

/* The store's message without its leading "<where>: ", which the reason
 * already names (the failure marker has 1024 bytes for every reason). */
static const char *without_where(const char *message, const char *where) {
  size_t n = where ? strlen(where) : 0;
  if (n && strncmp(message, where, n) == 0 && strncmp(message + n, ": ", 2) == 0)
    return message + n + 2;
  return message;
}

static void put_done(const aw_store_result *res, void *arg) {
  aw_artifacts *a = arg;
  a->op = NULL;
  if (a->done) return;
  item *it = &a->items[a->cur];
  char *where = item_where(it);
  if (res->status == AW_STORE_OK) {
    char parts[32] = "";
    if (res->parts) snprintf(parts, sizeof(parts), ", %u parts", res->parts);
    aw_info("%s \"%s\" saved to %s (%llu bytes%s, %u attempts)", what_of(it), it->name,
            where ? where : "?", (unsigned long long)res->bytes, parts, res->attempts);
    record_saved(a, it);
  } else if (res->status == AW_STORE_CANCELLED) {
    item_reason(a, it, "not saved: the grace period's reserve began before the upload finished"
                       " (the upload was aborted)");
  } else {
    item_reason(a, it, res->message ? without_where(res->message, where) : "upload failed");
  }
  free(where);
  a->cur++;
  next_item(a);
}

/* One file of a folder is in: the next, or the folder is saved. */
static void folder_file_done(const aw_store_result *res, void *arg) {
  aw_artifacts *a = arg;
  a->op = NULL;
  if (a->done) return;
  item *it = &a->items[a->cur];
  const char *file = it->files.files[it->file_cur];
  if (res->status == AW_STORE_CANCELLED) {
    char *why = aw_strdupf("not saved: the grace period's reserve began before %s was uploaded (%zu of "
                     "%zu files were)", file, it->file_cur, it->files.count);
    item_reason(a, it, why ? why : "not saved: the grace period's reserve began");
    free(why);
    aw_dirlist_free(&it->files);
  } else if (res->status != AW_STORE_OK) {
    /* The store's message names the file's own key. */
    char *why = res->message ? NULL : aw_strdupf("%s: upload failed", file);
    item_reason(a, it, res->message ? res->message : why ? why : "upload failed");
    free(why);
    aw_dirlist_free(&it->files);
  } else {
    aw_debug("%s \"%s\": %s uploaded (%llu bytes)", what_of(it), it->name, file,
             (unsigned long long)res->bytes);
    it->file_cur++;
    upload_next_file(a, it);
    return;
  }
  a->cur++;
  next_item(a);
}

/* Uploads the folder's files one after the other to <key>/<relative path>;
 * the first failure ends the artifact (as Argo's S3 driver does). */
static void upload_next_file(aw_artifacts *a, item *it) {
  if (a->reserve) {
    item_reason(a, it, "not saved: the grace period's reserve began first");
  } else if (it->file_cur == it->files.count) {
    char *where = item_where(it);
    if (it->files.count == 0)
      aw_info("%s \"%s\": the folder %s is empty: nothing uploaded, reported with key %s (as Argo "
              "does)", what_of(it), it->name, it->art->path, it->key);
    else
      aw_info("%s \"%s\" saved to %s/ (%zu files, %llu bytes)", what_of(it), it->name,
              where ? where : "?", it->files.count, (unsigned long long)it->files.bytes);
    free(where);
    record_saved(a, it);
  } else {
    const char *file = it->files.files[it->file_cur];
    char *key = aw_store_child_key(it->store, it->key, file);
    char *rel = aw_strdupf("%s/%s", it->rel, file);
    if (key && rel)
      a->op = aw_store_put(it->store, key, it->base, rel, true, folder_file_done, a);
    free(key);
    free(rel);
    if (a->op) return;
    item_reason(a, it, "cannot start the upload");
  }
  aw_dirlist_free(&it->files); /* staging is over for this item: the list can go */
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
    char *where = item_where(it);
    aw_info("uploading %s \"%s\" to %s%s", what_of(it), it->name, where ? where : "?",
            it->folder ? "/ (one object per file)" : "");
    free(where);
    if (it->folder) return upload_next_file(a, it);
    a->op = aw_store_put(it->store, it->key, it->base, it->rel, false, put_done, a);
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

/* ---- the stores ---- */

static bool slot_in_use(const aw_artifacts *a, const store_slot *slot) {
  for (size_t i = 0; slot->store && i < a->count; i++)
    if (a->items[i].state == IT_PENDING && a->items[i].store == slot->store) return true;
  return false;
}

/* Every pending item of the slot's store gets the reason. */
static void slot_reason(aw_artifacts *a, const store_slot *slot, const char *why) {
  for (size_t i = 0; i < a->count; i++)
    if (a->items[i].state == IT_PENDING && a->items[i].store == slot->store)
      item_reason(a, &a->items[i], why);
}

static void prepare_next_store(aw_artifacts *a);

static void prepare_done(const aw_store_result *res, void *arg) {
  aw_artifacts *a = arg;
  a->op = NULL;
  if (a->done) return;
  if (res->status != AW_STORE_OK) {
    char *why = aw_strdupf("the bucket is not usable: %s", res->message ? res->message : "?");
    slot_reason(a, &a->slots[a->prep_cur], why ? why : "the bucket is not usable");
    free(why);
  }
  a->prep_cur++;
  prepare_next_store(a);
}

/* Runs each store's work before the first upload, one at a time, then the
 * uploads. */
static void prepare_next_store(aw_artifacts *a) {
  for (; a->prep_cur < a->slot_count; a->prep_cur++) {
    store_slot *slot = &a->slots[a->prep_cur];
    if (!slot->store || !slot_in_use(a, slot)) continue;
    if (aw_store_prepare(slot->store, prepare_done, a, &a->op)) return;
  }
  next_item(a);
}

/* Pool: reads only the slots (the loop may give items reasons meanwhile). */
static void creds_work(uv_work_t *w) {
  aw_artifacts *a = w->data;
  for (size_t i = 0; i < a->slot_count; i++) {
    store_slot *slot = &a->slots[i];
    if (slot->load) aw_store_load_credentials(slot->store, a->cfg, &slot->cred_err);
  }
}

static void connect_next_store(aw_artifacts *a);

static void connect_done(const aw_store_result *res, void *arg) {
  aw_artifacts *a = arg;
  if (a->done) return;
  if (res->status != AW_STORE_OK)
    slot_reason(a, &a->slots[a->conn_cur],
                res->message ? res->message : "cannot set up the repository client");
  a->conn_cur++;
  connect_next_store(a);
}

/* Connects each store in use, one at a time (one may first wait for its
 * credentials: S3 from STS), then prepares them. */
static void connect_next_store(aw_artifacts *a) {
  for (; a->conn_cur < a->slot_count; a->conn_cur++) {
    store_slot *slot = &a->slots[a->conn_cur];
    if (!slot->load || !slot_in_use(a, slot)) continue;
    if (slot->cred_err) {
      slot_reason(a, slot, slot->cred_err);
      continue;
    }
    char *err = NULL;
    aw_store_connect_status st =
        aw_store_connect(slot->store, a->loop, a->http, a->budget, connect_done, a, &err);
    if (st == AW_STORE_CONNECTING) return;
    if (st == AW_STORE_CONNECT_FAILED)
      slot_reason(a, slot, err ? err : "cannot set up the repository client");
    free(err);
  }
  a->prep_cur = 0;
  prepare_next_store(a);
}

static void creds_after(uv_work_t *w, int status) {
  aw_artifacts *a = w->data;
  a->pool_pending = false;
  if (a->freed) return release(a);
  /* After the reserve, its timer finishes the module: start no request. */
  if (a->done || a->reserve) return;
  for (size_t i = 0; status != 0 && i < a->slot_count; i++)
    if (a->slots[i].load) slot_reason(a, &a->slots[i], "reading the credentials was cancelled");
  a->conn_cur = 0;
  connect_next_store(a);
}

/* ---- start ---- */

/* Stores take their settings from the wait container's environment (S3:
 * upload settings, the pod's web identity as the EKS webhook injects it). */
static const char *process_env(const char *name) { return getenv(name); }

/* Checks that need no file: locations that cannot be used. */
static void precheck(aw_artifacts *a) {
  for (size_t i = 0; i < a->count; i++) {
    item *it = &a->items[i];
    const aw_output_artifact *art = it->art;
    const char *own = art ? art->own_type : NULL;
    if (own && strcmp(own, "s3") != 0 && strcmp(own, "artifactory") != 0) {
      char why[160];
      bool input_only = !strcmp(own, "git") || !strcmp(own, "http") || !strcmp(own, "raw");
      snprintf(why, sizeof(why), input_only ? "a %s location cannot hold an output artifact"
                                            : "saving to a %s location is not supported",
               own);
      item_reason(a, it, why);
    } else if (art && art->own_s3_full) {
      item_reason(a, it, "an artifact's own S3 bucket or endpoint is not supported yet");
    } else if (art && art->name && !safe_component(art->name)) {
      item_reason(a, it, "the artifact's name is not usable as a file name");
    } else if (!it->store) {
      item_reason(a, it, it->store_why ? it->store_why : "no artifact repository");
    } else if (art && art->own_key && strcmp(aw_store_type(it->store), "s3") != 0) {
      char why[200];
      snprintf(why, sizeof(why), "its own s3 key needs an S3 artifact repository, not %s",
               aw_store_type(it->store));
      item_reason(a, it, why);
    }
  }
}

/* The slot of the item's repository: the artifact's own Artifactory
 * location gets a slot of its own, everything else the archiveLocation's. */
static store_slot *slot_for(aw_artifacts *a, const aw_output_artifact *art) {
  if (!art || !art->own_type || strcmp(art->own_type, "artifactory") != 0) return &a->slots[0];
  store_slot *slot = &a->slots[a->slot_count++];
  slot->store = aw_store_for_own_artifactory(art, &slot->why);
  return slot;
}

/* The name an artifact is uploaded under (Argo's fileName), or NULL when
 * its path is not absolute (staging then says so) or memory ran out. */
static char *upload_name(const aw_output_artifact *art) {
  char *clean = aw_path_clean(art->path);
  char *upload = NULL;
  if (clean) {
    switch (art->strategy) {
    case AW_STRATEGY_TAR: upload = aw_strdupf("%s.tgz", art->name); break;
    case AW_STRATEGY_ZIP: upload = aw_strdupf("%s.zip", art->name); break;
    case AW_STRATEGY_NONE: upload = strdup(base_name(clean)); break;
    }
  }
  free(clean);
  return upload;
}

/* Returns -1 only when memory ran out. */
static int add_item(aw_artifacts *a, const aw_output_artifact *art, const char *container) {
  item *it = &a->items[a->count++];
  it->art = art;
  it->container = container;
  store_slot *slot = slot_for(a, art);
  it->store = slot->store;
  it->store_why = slot->why;
  if (!it->store && !it->store_why) return -1;
  char *upload = NULL;
  if (!art) {
    it->name = aw_strdupf("%s-logs", container);
    upload = aw_strdupf("%s.log", container);
  } else {
    it->name = strdup(art->name);
    if (art->own_key) it->key = strdup(art->own_key);
    else if (!art->own_url) upload = upload_name(art);
    if (!art->own_key && !art->own_url && !upload && art->path[0] == '/') return -1;
  }
  if (it->store && !it->key && (upload || (art && art->own_url)))
    it->key = aw_store_key(it->store, upload);
  bool need_key = it->store && (upload || (art && (art->own_key || art->own_url)));
  free(upload);
  return it->name && (it->key || !need_key) ? 0 : -1;
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
  a->slots = calloc(tmpl->artifact_count + 1, sizeof(*a->slots));
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  a->timer_open = true;
  bool oom = !a->saved || !a->items || !a->slots;
  if (!oom) {
    a->slot_count = 1;
    store_slot *slot = &a->slots[0];
    slot->store = aw_store_for_archive_location(&tmpl->location, process_env, cfg->pod_name,
                                                &slot->why);
    oom = !slot->store && !slot->why;
  }
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
  for (size_t i = 0; i < a->slot_count; i++) a->slots[i].load = slot_in_use(a, &a->slots[i]);
  a->work.data = a;
  if (any && uv_queue_work(loop, &a->work, creds_work, creds_after) == 0) {
    a->pool_pending = true;
  } else {
    for (size_t i = 0; any && i < a->count; i++)
      if (a->items[i].state == IT_PENDING)
        item_reason(a, &a->items[i], "cannot start reading the repository credentials");
    uv_timer_start(&a->timer, on_timer, 0, 0);
  }
  return a;
}

static void stores_budget_changed(aw_artifacts *a, bool now_too) {
  for (size_t i = 0; i < a->slot_count; i++)
    if (a->slots[i].store) aw_store_budget_changed(a->slots[i].store, now_too);
}

/* A store still waiting for its credentials cannot save anything now: its
 * items say where the wait stood (for S3, STS's last answer). */
static void stop_connecting(aw_artifacts *a) {
  static const char cause[] = "the grace period's reserve began";
  for (size_t i = 0; i < a->slot_count; i++) {
    store_slot *slot = &a->slots[i];
    char *why = NULL;
    if (slot->store && aw_store_connect_stop(slot->store, cause, &why))
      slot_reason(a, slot, why ? why : "the grace period's reserve began while connecting");
    free(why);
  }
}

void aw_artifacts_reserve(aw_artifacts *a) {
  if (!a || a->done || a->reserve) return;
  a->reserve = true;
  stop_connecting(a);
  stores_budget_changed(a, true);
  if (a->op) aw_store_cancel(a->op);
  /* Give an abort a moment to land; then report whatever happens. */
  uint64_t left = aw_budget_clip(a->budget, uv_now(a->loop), UINT64_MAX);
  uint64_t wait = left / 4 < ABORT_WAIT_MAX_MS ? left / 4 : ABORT_WAIT_MAX_MS;
  if (!a->op) wait = 0;
  aw_info("artifacts: the reserve began; reporting what was saved%s",
          a->op ? " once the upload in flight is aborted" : "");
  uv_timer_start(&a->timer, on_timer, wait, 0);
}

void aw_artifacts_budget_changed(aw_artifacts *a) {
  if (a && !a->done) stores_budget_changed(a, false);
}

bool aw_artifacts_busy(const aw_artifacts *a) { return a && a->pool_pending; }

void aw_artifacts_free(aw_artifacts *a) {
  if (!a || a->freed) return;
  a->freed = true;
  a->done = true;
  /* Stops every upload without a callback. Pool work (credentials,
   * staging) reads the stores, and no upload runs while it does (one step
   * at a time): then they go in release(), once it has returned. */
  for (size_t i = 0; !a->pool_pending && i < a->slot_count; i++) {
    aw_store_free(a->slots[i].store);
    a->slots[i].store = NULL;
  }
  a->op = NULL;
  if (a->timer_open && !uv_is_closing((uv_handle_t *)&a->timer))
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
  release(a);
}
