/* Small file jobs on the libuv thread pool.
 *
 * The loop thread only queues the job and later receives the result; the
 * blocking open/read/write happens on a pool thread. */
#include "argowait/fsjob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum {
  READ_WHOLE,   /* base_dir/rel beneath base_dir, capped */
  READ_TAIL,    /* the last cap bytes of base_dir/rel */
  READ_TRUSTED, /* base_dir is the whole path; symlinks are followed */
} read_kind;

typedef struct {
  uv_work_t work;
  char *base_dir;
  char *rel;
  size_t cap;
  read_kind kind;
  int err;
  aw_bytes data;
  aw_fs_read_cb cb;
  void *arg;
} read_job;

static void read_job_work(uv_work_t *work) {
  read_job *job = work->data;
  bool cut = false;
  if (job->kind == READ_TRUSTED)
    job->err = aw_read_trusted(job->base_dir, job->cap, &job->data);
  else if (job->kind == READ_TAIL)
    job->err = aw_read_tail_beneath(job->base_dir, job->rel, job->cap, &job->data, &cut);
  else
    job->err = aw_read_beneath(job->base_dir, job->rel, job->cap, &job->data);
}

static void read_job_done(uv_work_t *work, int status) {
  read_job *job = work->data;
  int err = status == UV_ECANCELED ? -ECANCELED : job->err;
  if (err) aw_bytes_free(&job->data);
  job->cb(err, err ? NULL : &job->data, job->arg);
  aw_bytes_free(&job->data);
  free(job->base_dir);
  free(job->rel);
  free(job);
}

static int queue_read(uv_loop_t *loop, const char *base_dir, const char *rel, size_t cap,
                      read_kind kind, aw_fs_read_cb cb, void *arg) {
  read_job *job = calloc(1, sizeof(*job));
  if (!job) return -ENOMEM;
  job->kind = kind;
  job->base_dir = strdup(base_dir);
  job->rel = strdup(rel);
  job->cap = cap;
  job->cb = cb;
  job->arg = arg;
  job->work.data = job;
  int rc = job->base_dir && job->rel ? uv_queue_work(loop, &job->work, read_job_work, read_job_done)
                                     : -ENOMEM;
  if (rc != 0) {
    free(job->base_dir);
    free(job->rel);
    free(job);
  }
  return rc;
}

int aw_fs_read_small(uv_loop_t *loop, const char *base_dir, const char *rel, size_t cap,
                     aw_fs_read_cb cb, void *arg) {
  return queue_read(loop, base_dir, rel, cap, READ_WHOLE, cb, arg);
}

int aw_fs_read_tail(uv_loop_t *loop, const char *base_dir, const char *rel, size_t tail,
                    aw_fs_read_cb cb, void *arg) {
  return queue_read(loop, base_dir, rel, tail, READ_TAIL, cb, arg);
}

int aw_fs_read_trusted(uv_loop_t *loop, const char *path, size_t cap, aw_fs_read_cb cb, void *arg) {
  return queue_read(loop, path, "", cap, READ_TRUSTED, cb, arg);
}

typedef struct {
  uv_work_t work;
  char *path;
  char *data;
  size_t len;
  int mode;
  int err;
  aw_fs_write_cb cb;
  void *arg;
} write_job;

static int write_all(int fd, const char *data, size_t len) {
  while (len) {
    ssize_t n = write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static void write_job_work(uv_work_t *work) {
  write_job *job = work->data;
  /* O_NOFOLLOW: the folder is shared with the main container, which could
   * have put a symlink where we write. */
  int fd = open(job->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                job->mode);
  if (fd < 0) {
    job->err = -errno;
    return;
  }
  job->err = write_all(fd, job->data, job->len);
  /* The umask narrows the mode open() gave; the emissary may run as another
   * user and must be able to read (and delete) what we write. */
  if (!job->err && fchmod(fd, (mode_t)job->mode) != 0) job->err = -errno;
  if (close(fd) != 0 && !job->err) job->err = -errno;
}

static void write_job_done(uv_work_t *work, int status) {
  write_job *job = work->data;
  if (job->cb) job->cb(status == UV_ECANCELED ? -ECANCELED : job->err, job->arg);
  free(job->path);
  free(job->data);
  free(job);
}

int aw_fs_write_small(uv_loop_t *loop, const char *path, const char *data,
                      size_t len, int mode, aw_fs_write_cb cb, void *arg) {
  write_job *job = calloc(1, sizeof(*job));
  if (!job) return -ENOMEM;
  job->path = strdup(path);
  job->data = malloc(len ? len : 1);
  if (!job->path || !job->data) {
    free(job->path);
    free(job->data);
    free(job);
    return -ENOMEM;
  }
  memcpy(job->data, data, len);
  job->len = len;
  job->mode = mode;
  job->cb = cb;
  job->arg = arg;
  job->work.data = job;
  int rc = uv_queue_work(loop, &job->work, write_job_work, write_job_done);
  if (rc != 0) {
    free(job->path);
    free(job->data);
    free(job);
  }
  return rc;
}
