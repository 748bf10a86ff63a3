/* Listing a folder's regular files without following a symlink.
 *
 * The walk holds one open descriptor per level (at most max_depth) and one
 * path buffer; every name found is checked with fstatat(AT_SYMLINK_NOFOLLOW)
 * on the descriptor of its folder, and folders are entered with
 * openat(O_NOFOLLOW | O_DIRECTORY), so a rename race cannot lead the walk
 * out of the tree: at worst a swapped entry is skipped. */
#include "argowait/dirlist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  aw_dirlist *out;
  size_t max_files, max_name_bytes;
  unsigned max_depth;
  size_t name_bytes;
  size_t cap; /* of out->files */
  char path[PATH_MAX]; /* the current entry, relative to the folder */
  char **err;
} walker;

void aw_dirlist_init(aw_dirlist *l) {
  memset(l, 0, sizeof(*l));
  aw_reasons_init(&l->warnings);
}

void aw_dirlist_free(aw_dirlist *l) {
  if (!l) return;
  for (size_t i = 0; i < l->count; i++) free(l->files[i]);
  free(l->files);
  aw_reasons_free(&l->warnings);
  memset(l, 0, sizeof(*l));
}

int aw_dirlist_compare(const char *a, const char *b) {
  const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
  while (*x && *x == *y) x++, y++;
  int cx = *x == '/' ? 1 : *x == '\0' ? 0 : *x + 1;
  int cy = *y == '/' ? 1 : *y == '\0' ? 0 : *y + 1;
  return cx - cy;
}

/* strerror may share a buffer between threads; this runs on the pool. */
static const char *errtext(int e) {
  const char *d = strerrordesc_np(e);
  return d ? d : "unknown error";
}

static int compare_entries(const void *a, const void *b) {
  return aw_dirlist_compare(*(char *const *)a, *(char *const *)b);
}

static void warn(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(walker *w, const char *fmt, ...) {
  if (w->out->warnings.count >= AW_DIRLIST_MAX_WARNINGS) {
    w->out->warnings_dropped++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(&w->out->warnings, fmt, ap);
  va_end(ap);
}

static int fail(char **err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **err, int rc, const char *fmt, ...) {
  if (err && !*err) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0) *err = NULL;
    va_end(ap);
    if (!*err) *err = strdup("cannot list the folder");
  }
  return rc;
}

/* Opens the folder rel beneath base_fd, one component at a time, refusing
 * every symlink on the way and at the end. */
static int open_folder(int base_fd, const char *rel, char **err) {
  int fd = dup(base_fd);
  if (fd < 0) return fail(err, -errno, "%s: %s", rel, errtext(errno));
  for (const char *p = rel; *p;) {
    size_t n = strcspn(p, "/");
    const char *next = p + n;
    while (*next == '/') next++;
    if (n == 0 || (n == 1 && p[0] == '.')) {
      p = next;
      continue;
    }
    char comp[NAME_MAX + 1];
    if (n > NAME_MAX || (n == 2 && p[0] == '.' && p[1] == '.')) {
      close(fd);
      return fail(err, -EINVAL, "%s: not a usable path", rel);
    }
    memcpy(comp, p, n);
    comp[n] = '\0';
    int sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    struct stat st;
    bool link = sub < 0 && fstatat(fd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
    close(fd);
    if (link) return fail(err, -ELOOP, "%s: refusing a symlink on the way to the folder", rel);
    if (sub < 0) return fail(err, -e, "%s: %s", rel, errtext(e));
    fd = sub;
    p = next;
  }
  return fd;
}

static int add_file(walker *w, size_t len, const struct stat *st) {
  aw_dirlist *out = w->out;
  if (out->count >= w->max_files)
    return fail(w->err, -E2BIG, "more than %zu files (the limit for an artifact saved without an "
                "archive: use tar or zip)", w->max_files);
  if (w->name_bytes + len + 1 > w->max_name_bytes)
    return fail(w->err, -E2BIG, "the file names add up to more than %zu bytes (the limit for an "
                "artifact saved without an archive: use tar or zip)", w->max_name_bytes);
  if (out->count == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 64;
    if (cap > w->max_files) cap = w->max_files;
    char **grown = realloc(out->files, cap * sizeof(*grown));
    if (!grown) return fail(w->err, -ENOMEM, "out of memory");
    out->files = grown;
    w->cap = cap;
  }
  char *name = strndup(w->path, len);
  if (!name) return fail(w->err, -ENOMEM, "out of memory");
  out->files[out->count++] = name;
  w->name_bytes += len + 1;
  out->bytes += (uint64_t)st->st_size;
  return 0;
}

static int walk(walker *w, int dfd, size_t len, unsigned depth);

/* One entry of the folder whose path (relative) fills w->path[0..len). */
static int visit(walker *w, int dfd, const char *name, size_t len, unsigned depth) {
  size_t n = strlen(name);
  size_t at = len ? len + 1 : 0;
  if (at + n + 1 > sizeof(w->path))
    return fail(w->err, -ENAMETOOLONG, "%.*s/%s: path too long", (int)len, w->path, name);
  if (len) w->path[len] = '/';
  memcpy(w->path + at, name, n + 1);
  size_t sub_len = at + n;
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return 0; /* gone since readdir */
    return fail(w->err, -errno, "%s: %s", w->path, errtext(errno));
  }
  if (S_ISREG(st.st_mode)) return add_file(w, sub_len, &st);
  if (S_ISLNK(st.st_mode)) {
    w->out->skipped++;
    warn(w, "%s is a symlink: skipped, never followed", w->path);
    return 0;
  }
  if (!S_ISDIR(st.st_mode)) {
    w->out->skipped++;
    warn(w, "%s is not a regular file (FIFO, socket or device): skipped", w->path);
    return 0;
  }
  if (depth + 1 > w->max_depth)
    return fail(w->err, -E2BIG, "%s: folders nested deeper than %u levels", w->path, w->max_depth);
  int sub = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (sub < 0) {
    if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) {
      /* Swapped for a symlink or a file since fstatat. */
      w->out->skipped++;
      warn(w, "%s changed while it was listed: skipped", w->path);
      return 0;
    }
    return fail(w->err, -errno, "%s: %s", w->path, errtext(errno));
  }
  w->out->dirs++;
  return walk(w, sub, sub_len, depth + 1);
}

/* Lists the folder open at dfd (taken over) whose path is w->path[0..len). */
static int walk(walker *w, int dfd, size_t len, unsigned depth) {
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return fail(w->err, -e, "%.*s: %s", (int)len, len ? w->path : ".", errtext(e));
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno) rc = fail(w->err, -errno, "%.*s: %s", (int)len, len ? w->path : ".", errtext(errno));
      break;
    }
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
    rc = visit(w, dirfd(d), de->d_name, len, depth);
    w->path[len] = '\0';
    if (rc) break;
  }
  closedir(d);
  return rc;
}

int aw_dirlist_files(const char *base_dir, const char *rel, const aw_dirlist_limits *limits,
                     aw_dirlist *out, char **err) {
  if (err) *err = NULL;
  walker *w = calloc(1, sizeof(*w));
  if (!w) return fail(err, -ENOMEM, "out of memory");
  w->out = out;
  w->err = err;
  w->max_files = limits && limits->max_files ? limits->max_files : AW_DIRLIST_MAX_FILES;
  w->max_name_bytes =
      limits && limits->max_name_bytes ? limits->max_name_bytes : AW_DIRLIST_MAX_NAME_BYTES;
  w->max_depth = limits && limits->max_depth ? limits->max_depth : AW_DIRLIST_MAX_DEPTH;
  int rc;
  int base_fd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0) {
    rc = fail(err, -errno, "%s: %s", base_dir, errtext(errno));
  } else {
    int fd = open_folder(base_fd, rel ? rel : "", err);
    close(base_fd);
    rc = fd < 0 ? fd : walk(w, fd, 0, 0);
  }
  if (rc == 0 && out->count > 1) qsort(out->files, out->count, sizeof(*out->files), compare_entries);
  if (rc != 0) { /* never a partial list */
    for (size_t i = 0; i < out->count; i++) free(out->files[i]);
    free(out->files);
    out->files = NULL;
    out->count = 0;
    out->bytes = 0;
  }
  free(w);
  return rc;
}
