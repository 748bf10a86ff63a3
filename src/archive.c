/* Artifact archives with libarchive; blocking, for the thread pool.
 *
 * The source tree is walked with openat(..., O_NOFOLLOW) from a descriptor
 * of the base folder, so no symlink, "..", or rename race can lead the walk
 * out of it. Each entry's metadata comes from fstat of the opened descriptor
 * (or fstatat without following for links), its content from read() in
 * CHUNK-sized pieces. */
#include "argowait/archive.h"

#include <archive.h>
#include <archive_entry.h>
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

#define CHUNK (128u * 1024u)

typedef struct {
  struct archive *a;
  bool zip;
  aw_archive_stats *st;
  char *buf;
  char **err;
  const char *rel; /* for messages */
} writer_ctx;

void aw_archive_stats_init(aw_archive_stats *st) {
  memset(st, 0, sizeof(*st));
  aw_reasons_init(&st->warnings);
}

void aw_archive_stats_free(aw_archive_stats *st) {
  if (st) aw_reasons_free(&st->warnings);
}

static void warn(aw_archive_stats *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(aw_archive_stats *st, const char *fmt, ...) {
  if (st->warnings.count >= AW_ARCHIVE_MAX_WARNINGS) {
    st->warnings_dropped++;
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(&st->warnings, fmt, ap);
  va_end(ap);
}

static int fail(char **err, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char **err, int rc, const char *fmt, ...) {
  if (err && !*err) {
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(err, fmt, ap) < 0) *err = NULL;
    va_end(ap);
    if (!*err) *err = strdup("archive error");
  }
  return rc;
}

static int archive_fail(writer_ctx *w, const char *what) {
  const char *msg = archive_error_string(w->a);
  return fail(w->err, -EIO, "%s: %s: %s", w->rel, what, msg ? msg : "libarchive error");
}

/* A path relative to the base: not empty, not absolute, no ".." and at least
 * one real component. */
static bool rel_is_safe(const char *rel) {
  if (!rel || !*rel || rel[0] == '/') return false;
  bool named = false;
  for (const char *p = rel; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    if (n && !(n == 1 && p[0] == '.')) named = true;
    p += n;
    while (*p == '/') p++;
  }
  return named;
}

/* Opens the folder that holds the last component of rel, beneath base_fd,
 * refusing every symlink on the way. *leaf points into rel (its last
 * component, trailing slashes not included; *leaf_len its length). */
static int open_parent(int base_fd, const char *rel, const char **leaf, size_t *leaf_len) {
  int fd = dup(base_fd);
  if (fd < 0) return -errno;
  const char *p = rel;
  for (;;) {
    while (*p == '/') p++;
    size_t n = strcspn(p, "/");
    const char *next = p + n;
    while (*next == '/') next++;
    if (!*next) {
      *leaf = p;
      *leaf_len = n;
      return fd;
    }
    if (n == 1 && p[0] == '.') {
      p = next;
      continue;
    }
    char comp[NAME_MAX + 1];
    if (n > NAME_MAX) {
      close(fd);
      return -ENAMETOOLONG;
    }
    memcpy(comp, p, n);
    comp[n] = '\0';
    int sub = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(fd);
    if (sub < 0) return e == ENOTDIR ? -ELOOP : -e;
    fd = sub;
    p = next;
  }
}

static int write_header(writer_ctx *w, struct archive_entry *e) {
  int rc = archive_write_header(w->a, e);
  if (rc == ARCHIVE_WARN) {
    const char *msg = archive_error_string(w->a);
    warn(w->st, "%s: %s", archive_entry_pathname(e), msg ? msg : "warning");
    return 0;
  }
  return rc == ARCHIVE_OK ? 0 : archive_fail(w, "cannot write an entry header");
}

static void entry_from_stat(struct archive_entry *e, const char *apath, const struct stat *sb) {
  archive_entry_copy_stat(e, sb);
  archive_entry_copy_pathname(e, apath);
  /* Owners by number only; no name lookups on a pool thread. */
  archive_entry_set_uname(e, NULL);
  archive_entry_set_gname(e, NULL);
}

static int add_file(writer_ctx *w, int fd, const struct stat *sb, const char *apath) {
  struct archive_entry *e = archive_entry_new();
  if (!e) return fail(w->err, -ENOMEM, "out of memory");
  entry_from_stat(e, apath, sb);
  int rc = write_header(w, e);
  archive_entry_free(e);
  if (rc) return rc;
  uint64_t left = (uint64_t)sb->st_size;
  while (left) {
    size_t want = left < CHUNK ? (size_t)left : CHUNK;
    ssize_t n = read(fd, w->buf, want);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(w->err, -errno, "%s: reading %s: %s", w->rel, apath, strerror(errno));
    }
    if (n == 0) {
      /* The file shrank while we read it; the entry's size is in the header
       * already, so libarchive pads the rest with zeros. */
      warn(w->st, "%s changed size while being archived", apath);
      break;
    }
    la_ssize_t wr = archive_write_data(w->a, w->buf, (size_t)n);
    if (wr < 0) return archive_fail(w, "cannot write file data");
    left -= (uint64_t)n;
    w->st->bytes += (uint64_t)n;
  }
  if (archive_write_finish_entry(w->a) != ARCHIVE_OK) return archive_fail(w, "cannot finish an entry");
  w->st->files++;
  return 0;
}

static int add_symlink(writer_ctx *w, int parent_fd, const char *name, const struct stat *sb,
                       const char *apath) {
  if (w->zip) {
    w->st->skipped++;
    return 0;
  }
  char target[PATH_MAX];
  ssize_t n = readlinkat(parent_fd, name, target, sizeof(target) - 1);
  if (n < 0) {
    warn(w->st, "%s: cannot read the symlink: %s; skipped", apath, strerror(errno));
    w->st->skipped++;
    return 0;
  }
  target[n] = '\0';
  struct archive_entry *e = archive_entry_new();
  if (!e) return fail(w->err, -ENOMEM, "out of memory");
  entry_from_stat(e, apath, sb);
  archive_entry_set_size(e, 0);
  archive_entry_copy_symlink(e, target);
  int rc = write_header(w, e);
  archive_entry_free(e);
  if (rc) return rc;
  w->st->symlinks++;
  return 0;
}

static int add_tree(writer_ctx *w, int parent_fd, const char *name, aw_strbuf *apath, int depth);

static int add_dir(writer_ctx *w, int dfd, const struct stat *sb, aw_strbuf *apath, int depth) {
  if (depth > AW_ARCHIVE_MAX_DEPTH) {
    close(dfd);
    return fail(w->err, -ELOOP, "%s: folders nested deeper than %d levels", w->rel,
                AW_ARCHIVE_MAX_DEPTH);
  }
  if (!w->zip) {
    struct archive_entry *e = archive_entry_new();
    if (!e) {
      close(dfd);
      return fail(w->err, -ENOMEM, "out of memory");
    }
    aw_strbuf_appends(apath, "/");
    entry_from_stat(e, apath->data, sb);
    apath->data[--apath->len] = '\0';
    int rc = write_header(w, e);
    archive_entry_free(e);
    if (rc) {
      close(dfd);
      return rc;
    }
  }
  w->st->dirs++;
  DIR *d = fdopendir(dfd);
  if (!d) {
    int e = errno;
    close(dfd);
    return fail(w->err, -e, "%s: cannot list %s: %s", w->rel, apath->data, strerror(e));
  }
  int rc = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(d);
    if (!de) {
      if (errno) rc = fail(w->err, -errno, "%s: cannot list %s: %s", w->rel, apath->data, strerror(errno));
      break;
    }
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    size_t keep = apath->len;
    if (aw_strbuf_appendf(apath, "/%s", de->d_name) != 0) {
      rc = fail(w->err, -ENOMEM, "out of memory");
      break;
    }
    rc = add_tree(w, dirfd(d), de->d_name, apath, depth + 1);
    apath->len = keep;
    apath->data[keep] = '\0';
    if (rc) break;
  }
  closedir(d);
  return rc;
}

static int add_tree(writer_ctx *w, int parent_fd, const char *name, aw_strbuf *apath, int depth) {
  struct stat sb;
  if (fstatat(parent_fd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
    int e = errno;
    if (depth > 0 && e == ENOENT) {
      warn(w->st, "%s vanished while being archived", apath->data);
      return 0;
    }
    return fail(w->err, -e, "%s: %s", w->rel, strerror(e));
  }
  if (S_ISLNK(sb.st_mode)) return add_symlink(w, parent_fd, name, &sb, apath->data);
  if (S_ISDIR(sb.st_mode)) {
    int dfd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return fail(w->err, -errno, "%s: cannot open %s: %s", w->rel, apath->data, strerror(errno));
    struct stat dsb;
    if (fstat(dfd, &dsb) != 0) dsb = sb;
    return add_dir(w, dfd, &dsb, apath, depth);
  }
  if (S_ISREG(sb.st_mode)) {
    /* O_NONBLOCK: should the file have been swapped for a FIFO since the
     * fstatat, opening it must not wait for a writer; fstat then refuses. */
    int fd = openat(parent_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return fail(w->err, -errno, "%s: cannot open %s: %s", w->rel, apath->data, strerror(errno));
    struct stat fsb;
    int rc;
    if (fstat(fd, &fsb) != 0) {
      rc = fail(w->err, -errno, "%s: %s: %s", w->rel, apath->data, strerror(errno));
    } else if (!S_ISREG(fsb.st_mode)) {
      warn(w->st, "%s is not a regular file any more; skipped", apath->data);
      w->st->skipped++;
      rc = 0;
    } else {
      int fl = fcntl(fd, F_GETFL);
      if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
      rc = add_file(w, fd, &fsb, apath->data);
    }
    close(fd);
    return rc;
  }
  warn(w->st, "%s is a special file (FIFO, socket or device); skipped", apath->data);
  w->st->skipped++;
  return 0;
}

static int create_archive(const char *base_dir, const char *rel, const char *out_path, bool zip,
                          int level, aw_archive_stats *st, char **err) {
  if (err) *err = NULL;
  if (!rel_is_safe(rel)) return fail(err, -EINVAL, "%s: not a relative path without \"..\"", rel ? rel : "(null)");
  if (level < -1 || level > 9) return fail(err, -EINVAL, "%s: compression level %d is not in -1..9", rel, level);
  int base_fd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (base_fd < 0) return fail(err, -errno, "%s: %s", base_dir, strerror(errno));
  const char *leaf = NULL;
  size_t leaf_len = 0;
  int parent = open_parent(base_fd, rel, &leaf, &leaf_len);
  close(base_fd);
  if (parent < 0)
    return fail(err, parent, "%s: %s", rel,
                parent == -ELOOP ? "a symlink on the way leads out of the folder" : strerror(-parent));
  if (leaf_len > NAME_MAX) {
    close(parent);
    return fail(err, -ENAMETOOLONG, "%s: name too long", rel);
  }
  char name[NAME_MAX + 1];
  memcpy(name, leaf, leaf_len);
  name[leaf_len] = '\0';

  int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (out < 0) {
    int e = errno;
    close(parent);
    return fail(err, -e, "%s: %s", out_path, strerror(e));
  }
  writer_ctx w = {.zip = zip, .st = st, .err = err, .rel = rel};
  w.buf = malloc(CHUNK);
  w.a = archive_write_new();
  int rc = 0;
  if (!w.buf || !w.a) {
    rc = fail(err, -ENOMEM, "out of memory");
    goto out;
  }
  if (zip) {
    if (archive_write_set_format_zip(w.a) != ARCHIVE_OK) rc = archive_fail(&w, "zip format");
  } else {
    if (archive_write_set_format_pax_restricted(w.a) != ARCHIVE_OK ||
        archive_write_add_filter_gzip(w.a) != ARCHIVE_OK) {
      rc = archive_fail(&w, "tar.gz format");
    } else if (level >= 0) {
      char lv[4];
      snprintf(lv, sizeof(lv), "%d", level);
      if (archive_write_set_filter_option(w.a, "gzip", "compression-level", lv) != ARCHIVE_OK)
        rc = archive_fail(&w, "compression level");
    }
  }
  if (!rc && archive_write_open_fd(w.a, out) != ARCHIVE_OK) rc = archive_fail(&w, "cannot start the archive");
  if (!rc) {
    aw_strbuf apath;
    aw_strbuf_init(&apath);
    if (aw_strbuf_appends(&apath, name) != 0) rc = fail(err, -ENOMEM, "out of memory");
    else rc = add_tree(&w, parent, name, &apath, 0);
    aw_strbuf_free(&apath);
    if (archive_write_close(w.a) != ARCHIVE_OK && !rc) rc = archive_fail(&w, "cannot finish the archive");
  }
out:
  if (w.a) archive_write_free(w.a);
  free(w.buf);
  close(parent);
  if (close(out) != 0 && !rc) rc = fail(err, -errno, "%s: %s", out_path, strerror(errno));
  return rc;
}

int aw_archive_tgz(const char *base_dir, const char *rel, const char *out_path, int level,
                   aw_archive_stats *st, char **err) {
  return create_archive(base_dir, rel, out_path, false, level, st, err);
}

int aw_archive_zip(const char *base_dir, const char *rel, const char *out_path,
                   aw_archive_stats *st, char **err) {
  return create_archive(base_dir, rel, out_path, true, -1, st, err);
}

/* ---- extraction ---- */

static bool entry_name_is_safe(const char *name) {
  if (!name || !*name || name[0] == '/') return false;
  for (const char *p = name; *p;) {
    size_t n = strcspn(p, "/");
    if (n == 2 && p[0] == '.' && p[1] == '.') return false;
    p += n;
    while (*p == '/') p++;
  }
  /* A name made only of "." and "/" would be the folder itself. */
  return strspn(name, "./") != strlen(name);
}

int aw_archive_untar(const char *archive_path, const char *dest_dir, aw_archive_stats *st,
                     char **err) {
  if (err) *err = NULL;
  /* The destination is ours (scratch space); resolving it once means the
   * secure-symlink check below only ever sees links the archive made. */
  char *dest = realpath(dest_dir, NULL);
  if (!dest) return fail(err, -errno, "%s: %s", dest_dir, strerror(errno));
  struct archive *in = archive_read_new();
  struct archive *out = archive_write_disk_new();
  aw_strbuf full, orig;
  aw_strbuf_init(&full);
  aw_strbuf_init(&orig);
  int rc = 0;
  if (!in || !out) {
    rc = fail(err, -ENOMEM, "out of memory");
    goto done;
  }
  archive_read_support_filter_gzip(in);
  archive_read_support_filter_none(in);
  archive_read_support_format_tar(in);
  /* The entry names are checked here (absolute, ".."), then prefixed with
   * the absolute destination, so libarchive's own absolute-path check cannot
   * be used on the prefixed name; its symlink and dot-dot checks can. */
  archive_write_disk_set_options(out, ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                          ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  if (archive_read_open_filename(in, archive_path, CHUNK) != ARCHIVE_OK) {
    const char *m = archive_error_string(in);
    rc = fail(err, -EIO, "%s: %s", archive_path, m ? m : "cannot open");
    goto done;
  }
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(in, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      const char *m = archive_error_string(in);
      rc = fail(err, -EIO, "%s: %s", archive_path, m ? m : "bad archive");
      break;
    }
    /* The entry's own name string changes when the path is rewritten below;
     * messages use this copy. */
    const char *ename = archive_entry_pathname(e);
    orig.len = 0;
    if (ename && aw_strbuf_appends(&orig, ename) != 0) {
      rc = fail(err, -ENOMEM, "out of memory");
      break;
    }
    const char *name = ename ? orig.data : NULL;
    if (!entry_name_is_safe(name)) {
      rc = fail(err, -EINVAL, "%s: refused: entry %.200s%s is absolute or has \"..\"", archive_path,
                name ? name : "(no name)", name && strlen(name) > 200 ? "..." : "");
      break;
    }
    mode_t type = archive_entry_filetype(e);
    if (archive_entry_hardlink(e)) {
      warn(st, "%.200s: hard link skipped", name);
      st->skipped++;
      continue;
    }
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
      warn(st, "%.200s: special file skipped", name);
      st->skipped++;
      continue;
    }
    full.len = 0;
    if (aw_strbuf_appendf(&full, "%s/%s", dest, name) != 0) {
      rc = fail(err, -ENOMEM, "out of memory");
      break;
    }
    archive_entry_copy_pathname(e, full.data);
    archive_entry_set_perm(e, archive_entry_perm(e) & 0777);
    r = archive_write_header(out, e);
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      const char *m = archive_error_string(out);
      rc = fail(err, -EINVAL, "%s: refused: entry %.200s: %s", archive_path, name, m ? m : "cannot extract");
      break;
    }
    if (type == AE_IFREG) {
      const void *buf;
      size_t size;
      la_int64_t off;
      while ((r = archive_read_data_block(in, &buf, &size, &off)) == ARCHIVE_OK) {
        if (archive_write_data_block(out, buf, size, off) < 0) {
          r = ARCHIVE_FATAL;
          break;
        }
        st->bytes += size;
      }
      if (r != ARCHIVE_EOF) {
        const char *m = archive_error_string(r == ARCHIVE_FATAL ? out : in);
        rc = fail(err, -EIO, "%s: entry %.200s: %s", archive_path, name, m ? m : "cannot extract");
        break;
      }
      st->files++;
    } else if (type == AE_IFDIR) {
      st->dirs++;
    } else {
      st->symlinks++;
    }
    if (archive_write_finish_entry(out) != ARCHIVE_OK) {
      const char *m = archive_error_string(out);
      rc = fail(err, -EIO, "%s: entry %.200s: %s", archive_path, name, m ? m : "cannot finish");
      break;
    }
  }
done:
  if (out) {
    archive_write_close(out);
    archive_write_free(out);
  }
  if (in) archive_read_free(in);
  aw_strbuf_free(&full);
  aw_strbuf_free(&orig);
  free(dest);
  return rc;
}
