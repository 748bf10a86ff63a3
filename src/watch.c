/* Watching the exitcode files.
 *
 * The emissary writes ctr/<name>/exitcode last, after staging the outputs, so
 * its appearance means "done". It is not written atomically: an empty file
 * is "not yet", and every later change is read again. */
#include "argowait/watch.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "argowait/fsjob.h"
#include "argowait/log.h"

#define EXITCODE_MAX_BYTES 64

typedef struct {
  aw_watch *watch;
  size_t index;
  char *name;
  char *dir;      /* $ROOT/var/run/argo/ctr/<name>, watched */
  char *rel;      /* ctr/<name>/exitcode, read beneath the argo folder */
  uv_fs_event_t event;
  uv_fs_poll_t poll;
  bool event_active;
  bool poll_active;
  bool done;
  bool reading;   /* a read is queued */
  bool reread;    /* a change arrived while reading */
} container_watch;

struct aw_watch {
  uv_loop_t *loop;
  char *argo_dir; /* the emptyDir's mount point: the trusted base */
  container_watch *containers;
  size_t count;
  aw_watch_cb cb;
  void *arg;
  bool stopped;
  bool any_polling;
  unsigned pending; /* handles to close and reads in flight */
};

int aw_exitcode_parse(const char *data, size_t len, int *code) {
  size_t i = 0;
  while (i < len && isspace((unsigned char)data[i])) i++;
  while (len > i && isspace((unsigned char)data[len - 1])) len--;
  if (i == len) return -1;
  bool negative = false;
  if (data[i] == '-') {
    negative = true;
    if (++i == len) return 1;
  }
  /* The limit counts digits only (found by fuzz/fuzz_files.c: counted with
   * the sign, "-2147483647" was called malformed). Ten digits cannot
   * overflow a long long, whatever the width of long. */
  if (len - i > 10) return 1;
  long long value = 0;
  for (; i < len; i++) {
    if (!isdigit((unsigned char)data[i])) return 1;
    value = value * 10 + (data[i] - '0');
  }
  if (value > 2147483647LL) return 1;
  *code = negative ? -(int)value : (int)value;
  return 0;
}

static void maybe_free(aw_watch *w) {
  if (!w->stopped || w->pending) return;
  for (size_t i = 0; i < w->count; i++) {
    free(w->containers[i].name);
    free(w->containers[i].dir);
    free(w->containers[i].rel);
  }
  free(w->containers);
  free(w->argo_dir);
  free(w);
}

static void schedule_read(container_watch *c);

static void on_exitcode_read(int err, aw_bytes *data, void *arg) {
  container_watch *c = arg;
  aw_watch *w = c->watch;
  w->pending--;
  c->reading = false;
  if (w->stopped || c->done) {
    maybe_free(w);
    return;
  }
  if (err == -ENOENT) {
    if (c->reread) schedule_read(c);
    return;
  }
  if (err) {
    c->done = true;
    char reason[160];
    snprintf(reason, sizeof(reason), "cannot read the exitcode file: %s",
             aw_safefile_strerror(err));
    w->cb(c->index, -1, reason, w->arg);
    return;
  }
  int code = 0;
  int parsed = aw_exitcode_parse(data->data, data->len, &code);
  if (parsed < 0) {
    /* Empty: the emissary has created the file but not written it yet. */
    if (c->reread) schedule_read(c);
    return;
  }
  c->done = true;
  if (parsed > 0) {
    char reason[96];
    /* The bytes themselves are not repeated: the file is the main
     * container's to write, and could be anything. */
    snprintf(reason, sizeof(reason), "malformed exitcode file (%zu bytes, not a number)", data->len);
    w->cb(c->index, -1, reason, w->arg);
  } else {
    w->cb(c->index, code, NULL, w->arg);
  }
}

static void schedule_read(container_watch *c) {
  aw_watch *w = c->watch;
  if (c->done || w->stopped) return;
  if (c->reading) {
    c->reread = true;
    return;
  }
  c->reread = false;
  /* Beneath /var/run/argo, not beneath ctr/<name>: main shares the folder
   * and could replace ctr/<name> itself with a symlink. */
  if (aw_fs_read_small(w->loop, w->argo_dir, c->rel, EXITCODE_MAX_BYTES, on_exitcode_read, c) == 0) {
    c->reading = true;
    w->pending++;
  }
}

static void on_dir_event(uv_fs_event_t *handle, const char *filename, int events, int status) {
  (void)events;
  container_watch *c = handle->data;
  if (status < 0) return;
  if (filename && strcmp(filename, "exitcode") != 0) return;
  schedule_read(c);
}

static void on_poll_change(uv_fs_poll_t *handle, int status, const uv_stat_t *prev,
                           const uv_stat_t *curr) {
  (void)prev;
  (void)curr;
  container_watch *c = handle->data;
  if (status == 0) schedule_read(c);
}

static void on_watch_handle_closed(uv_handle_t *handle);

static int make_dir_0777(const char *path) {
  /* Argo's executor pre-creates the folders with mode 0777 so the emissary,
   * whatever user it runs as, can write into them. */
  if (mkdir(path, 0777) != 0 && errno != EEXIST) return -errno;
  struct stat st;
  /* lstat: a symlink planted by main is not a folder to chmod through. */
  if (lstat(path, &st) != 0) return -errno;
  if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
  if ((st.st_mode & 0777) != 0777) (void)chmod(path, 0777);
  return 0;
}

static int start_container(aw_watch *w, container_watch *c, char **err) {
  int rc = make_dir_0777(c->dir);
  if (rc != 0) {
    if (err && asprintf(err, "cannot create %s: %s", c->dir, strerror(-rc)) < 0) *err = NULL;
    return -1;
  }
  uv_fs_event_init(w->loop, &c->event);
  c->event.data = c;
  rc = uv_fs_event_start(&c->event, on_dir_event, c->dir, 0);
  if (rc == 0) {
    c->event_active = true;
  } else {
    /* inotify limits reached (EMFILE/ENOSPC), or no inotify at all. */
    aw_warn("inotify unavailable for %s (%s; the node's fs.inotify.max_user_instances may be "
            "used up); polling the exitcode file every %d ms", c->dir, uv_strerror(rc), AW_WATCH_POLL_MS);
    w->pending++;
    uv_close((uv_handle_t *)&c->event, on_watch_handle_closed);
    char *file = NULL;
    if (asprintf(&file, "%s/exitcode", c->dir) < 0) return -1;
    uv_fs_poll_init(w->loop, &c->poll);
    c->poll.data = c;
    rc = uv_fs_poll_start(&c->poll, on_poll_change, file, AW_WATCH_POLL_MS);
    free(file);
    if (rc != 0) {
      if (err && asprintf(err, "cannot watch %s: %s", c->dir, uv_strerror(rc)) < 0) *err = NULL;
      w->pending++;
      uv_close((uv_handle_t *)&c->poll, on_watch_handle_closed);
      return -1;
    }
    c->poll_active = true;
    w->any_polling = true;
  }
  /* The file may already be there (a restart, or main was quick). */
  schedule_read(c);
  return 0;
}

aw_watch *aw_watch_start(uv_loop_t *loop, const char *argo_dir, char *const *names, size_t count,
                         aw_watch_cb cb, void *arg, char **err) {
  aw_watch *w = calloc(1, sizeof(*w));
  if (!w) return NULL;
  w->loop = loop;
  w->cb = cb;
  w->arg = arg;
  w->containers = calloc(count ? count : 1, sizeof(*w->containers));
  if (!w->containers) {
    free(w);
    return NULL;
  }
  w->count = count;
  w->argo_dir = strdup(argo_dir);
  char *ctr_dir = NULL;
  if (asprintf(&ctr_dir, "%s/ctr", argo_dir) < 0) ctr_dir = NULL;
  if (ctr_dir) (void)make_dir_0777(ctr_dir);
  for (size_t i = 0; i < count; i++) {
    container_watch *c = &w->containers[i];
    c->watch = w;
    c->index = i;
    c->name = strdup(names[i]);
    if (!ctr_dir || asprintf(&c->dir, "%s/%s", ctr_dir, names[i]) < 0) c->dir = NULL;
    if (asprintf(&c->rel, "ctr/%s/exitcode", names[i]) < 0) c->rel = NULL;
  }
  free(ctr_dir);
  for (size_t i = 0; i < count; i++) {
    container_watch *c = &w->containers[i];
    if (!w->argo_dir || !c->dir || !c->rel || start_container(w, c, err) != 0) {
      aw_watch_stop(w);
      return NULL;
    }
  }
  return w;
}

bool aw_watch_polling(const aw_watch *w) { return w->any_polling; }

static void on_watch_handle_closed(uv_handle_t *handle) {
  container_watch *c = handle->data;
  aw_watch *w = c->watch;
  w->pending--;
  maybe_free(w);
}

void aw_watch_stop(aw_watch *w) {
  if (!w || w->stopped) return;
  w->stopped = true;
  for (size_t i = 0; i < w->count; i++) {
    container_watch *c = &w->containers[i];
    if (c->event_active) {
      uv_fs_event_stop(&c->event);
      w->pending++;
      uv_close((uv_handle_t *)&c->event, on_watch_handle_closed);
      c->event_active = false;
    }
    if (c->poll_active) {
      uv_fs_poll_stop(&c->poll);
      w->pending++;
      uv_close((uv_handle_t *)&c->poll, on_watch_handle_closed);
      c->poll_active = false;
    }
  }
  maybe_free(w);
}
