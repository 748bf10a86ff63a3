#include "argowait/safefile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

/* O_NONBLOCK: opening a FIFO for reading must never wait for a writer; the
 * fstat check then refuses it. O_NOCTTY: a terminal must not become ours. */
#define AW_LEAF_FLAGS (O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)

/* openat2 fails with EAGAIN when a concurrent rename could have let the
 * lookup escape; the main container can cause that on purpose, so the
 * retries are bounded. */
#define AW_OPENAT2_RETRIES 8

void aw_bytes_free(aw_bytes *b) {
  if (!b) return;
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

static bool is_dotdot(const char *comp, size_t len) {
  return len == 2 && comp[0] == '.' && comp[1] == '.';
}

static bool is_skippable(const char *comp, size_t len) {
  return len == 0 || (len == 1 && comp[0] == '.');
}

/* The same rules for both ways of opening, so that the result does not depend
 * on the kernel: relative, no "..", at least one real component. */
static int check_rel(const char *rel) {
  if (!rel || rel[0] == '\0' || rel[0] == '/') return -EINVAL;
  if (strlen(rel) >= PATH_MAX) return -ENAMETOOLONG;
  bool has_name = false;
  const char *p = rel;
  while (*p) {
    size_t len = strcspn(p, "/");
    if (is_dotdot(p, len)) return -EINVAL;
    if (!is_skippable(p, len)) has_name = true;
    p += len;
    if (*p == '/') p++;
  }
  return has_name ? 0 : -EINVAL;
}

/* Only regular files are read: a directory, FIFO, socket or device is
 * refused. Takes ownership of fd. */
static int accept_regular(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  if (S_ISREG(st.st_mode)) return fd;
  close(fd);
  return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
}

/* ENOTDIR from an O_NOFOLLOW|O_DIRECTORY open may be a symlink in disguise;
 * the caller deserves to hear that it was refused as one. */
static int classify_intermediate_error(int dirfd, const char *comp, int err) {
  if (err != ENOTDIR) return -err;
  struct stat st;
  if (fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode))
    return -ELOOP;
  return -ENOTDIR;
}

/* Opens one component beneath dirfd: a directory to walk into, or the leaf
 * file. Neither follows a symlink. */
static int open_component(int dirfd, const char *comp, bool is_leaf) {
  int flags = is_leaf ? (AW_LEAF_FLAGS | O_NOFOLLOW)
                      : (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int fd;
  do {
    fd = openat(dirfd, comp, flags);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return fd;
  if (is_leaf) return -errno;
  return classify_intermediate_error(dirfd, comp, errno);
}

/* The next real component of *cursor, copied into name (NAME_MAX + 1 bytes).
 * Returns its length, 0 at the end, or -ENAMETOOLONG. */
static int next_component(const char **cursor, char *name) {
  const char *p = *cursor;
  for (;;) {
    size_t len = strcspn(p, "/");
    const char *comp = p;
    p += len;
    if (*p == '/') p++;
    if (!is_skippable(comp, len)) {
      if (len > NAME_MAX) return -ENAMETOOLONG;
      memcpy(name, comp, len);
      name[len] = '\0';
      *cursor = p;
      return (int)len;
    }
    if (*comp == '\0') {
      *cursor = p;
      return 0;
    }
  }
}

int aw_open_beneath_walk(int dirfd, const char *rel) {
  int rc = check_rel(rel);
  if (rc != 0) return rc;

  char name[NAME_MAX + 1];
  char next[NAME_MAX + 1];
  const char *cursor = rel;
  rc = next_component(&cursor, name);
  if (rc <= 0) return rc < 0 ? rc : -EINVAL;

  int cur = dirfd; /* not ours to close until we step below it */
  for (;;) {
    rc = next_component(&cursor, next);
    if (rc < 0) break;
    bool is_leaf = rc == 0;
    int fd = open_component(cur, name, is_leaf);
    if (cur != dirfd) close(cur);
    if (fd < 0 || is_leaf) return fd < 0 ? fd : accept_regular(fd);
    cur = fd;
    memcpy(name, next, (size_t)rc + 1);
  }
  if (cur != dirfd) close(cur);
  return rc;
}

#ifdef SYS_openat2
/* Returns an fd, -ENOSYS when openat2 cannot be used here, or -errno. */
static int open_with_openat2(int dirfd, const char *rel) {
  struct open_how how;
  memset(&how, 0, sizeof(how));
  how.flags = AW_LEAF_FLAGS;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0; attempt < AW_OPENAT2_RETRIES; attempt++) {
    long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
    if (fd >= 0) return (int)fd;
    int err = errno;
    if (err == EINTR || err == EAGAIN) continue;
    /* ENOSYS: old kernel. E2BIG/EPERM: a seccomp filter that does not
     * know openat2 (or refuses every unknown syscall). */
    if (err == ENOSYS || err == E2BIG || err == EPERM) return -ENOSYS;
    return -err;
  }
  return -EAGAIN;
}
#endif

int aw_open_beneath(int dirfd, const char *rel) {
  int rc = check_rel(rel);
  if (rc != 0) return rc;
#ifdef SYS_openat2
  int fd = open_with_openat2(dirfd, rel);
  if (fd >= 0) return accept_regular(fd);
  if (fd != -ENOSYS) return fd;
#endif
  return aw_open_beneath_walk(dirfd, rel);
}

/* base_dir is built by us from fixed paths, so following symlinks in it is
 * fine; only what lies beneath it is the main container's. */
static int open_base_then_file(const char *base_dir, const char *rel) {
  int dirfd = open(base_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return -errno;
  int fd = aw_open_beneath(dirfd, rel);
  close(dirfd);
  return fd;
}

/* read(2) that retries on EINTR. Returns bytes read, 0 at EOF, or -errno. */
static ssize_t read_some(int fd, char *buf, size_t len) {
  for (;;) {
    ssize_t n = read(fd, buf, len);
    if (n >= 0) return n;
    if (errno != EINTR) return -errno;
  }
}

static int grow_buffer(char **buf, size_t *capacity, size_t limit) {
  size_t next = *capacity < 4096 ? 4096 : *capacity * 2;
  if (next > limit || next < *capacity) next = limit;
  char *grown = realloc(*buf, next);
  if (!grown) return -ENOMEM;
  *buf = grown;
  *capacity = next;
  return 0;
}

/* Reads until EOF, failing with -EFBIG past cap bytes. The buffer grows as
 * the bytes arrive: st_size is only a hint, the file may grow or shrink. */
static int read_capped(int fd, size_t cap, aw_bytes *out) {
  if (cap >= SIZE_MAX - 1) return -EINVAL;
  size_t limit = cap + 2; /* cap bytes, one more to notice excess, the NUL */
  char *buf = NULL;
  size_t capacity = 0, len = 0;
  for (;;) {
    if (len + 1 >= capacity) {
      if (capacity == limit) break;
      int rc = grow_buffer(&buf, &capacity, limit);
      if (rc != 0) {
        free(buf);
        return rc;
      }
    }
    ssize_t n = read_some(fd, buf + len, capacity - 1 - len);
    if (n < 0) {
      free(buf);
      return (int)n;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  if (len > cap) {
    free(buf);
    return -EFBIG;
  }
  buf[len] = '\0'; /* the first pass through the loop allocated buf */
  out->data = buf;
  out->len = len;
  return 0;
}

int aw_read_beneath(const char *base_dir, const char *rel, size_t cap,
                    aw_bytes *out) {
  out->data = NULL;
  out->len = 0;
  int fd = open_base_then_file(base_dir, rel);
  if (fd < 0) return fd;
  int rc = read_capped(fd, cap, out);
  close(fd);
  return rc;
}

int aw_read_trusted(const char *path, size_t cap, aw_bytes *out) {
  out->data = NULL;
  out->len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return -errno;
  fd = accept_regular(fd);
  if (fd < 0) return fd;
  int rc = read_capped(fd, cap, out);
  close(fd);
  return rc;
}

static void reverse_bytes(char *s, size_t len) {
  for (size_t i = 0, j = len; i + 1 < j; i++, j--) {
    char c = s[i];
    s[i] = s[j - 1];
    s[j - 1] = c;
  }
}

/* Moves ring[start..len) in front of ring[0..start) in place. */
static void rotate_left(char *ring, size_t len, size_t start) {
  reverse_bytes(ring, start);
  reverse_bytes(ring + start, len - start);
  reverse_bytes(ring, len);
}

/* Reads from the current offset into a ring of tail bytes, so memory stays
 * bounded when the file grows while we read. The reading itself stops after
 * `budget` bytes, so a writer that never stops cannot keep us here. */
static int read_into_ring(int fd, size_t tail, size_t budget, aw_bytes *out,
                          bool *dropped) {
  char *ring = malloc(tail + 1);
  if (!ring) return -ENOMEM;
  size_t total = 0;
  while (total < budget) {
    size_t pos = total % tail;
    size_t want = tail - pos;
    if (want > budget - total) want = budget - total;
    ssize_t n = read_some(fd, ring + pos, want);
    if (n < 0) {
      free(ring);
      return (int)n;
    }
    if (n == 0) break;
    total += (size_t)n;
  }
  size_t len = total < tail ? total : tail;
  if (total > tail) rotate_left(ring, tail, total % tail);
  ring[len] = '\0';
  out->data = ring;
  out->len = len;
  *dropped = total > tail;
  return 0;
}

static int read_tail_fd(int fd, size_t tail, aw_bytes *out, bool *cut) {
  struct stat st;
  if (fstat(fd, &st) != 0) return -errno;
  size_t size = (size_t)st.st_size;
  if (tail == 0) {
    out->data = calloc(1, 1);
    if (!out->data) return -ENOMEM;
    *cut = size > 0;
    return 0;
  }
  size_t start = size > tail ? size - tail : 0;
  if (start > 0 && lseek(fd, (off_t)start, SEEK_SET) < 0) return -errno;
  /* What is there now, plus one more window for bytes that arrive while we
   * read: the result is the last tail bytes at some moment during the read. */
  size_t budget = size - start;
  budget = budget > SIZE_MAX - tail ? SIZE_MAX : budget + tail;
  bool dropped = false;
  int rc = read_into_ring(fd, tail, budget, out, &dropped);
  if (rc == 0) *cut = start > 0 || dropped;
  return rc;
}

int aw_read_tail_beneath(const char *base_dir, const char *rel, size_t tail,
                         aw_bytes *out, bool *cut) {
  out->data = NULL;
  out->len = 0;
  *cut = false;
  int fd = open_base_then_file(base_dir, rel);
  if (fd < 0) return fd;
  int rc = read_tail_fd(fd, tail, out, cut);
  close(fd);
  return rc;
}

const char *aw_safefile_strerror(int neg_errno) {
  int err = neg_errno < 0 ? -neg_errno : neg_errno;
  switch (err) {
    case ELOOP:
    case EXDEV:
      return "refusing a symlink or path that leaves its folder";
    case EFBIG:
      return "file is larger than the read limit";
    case ENOENT:
      return "no such file";
    case EINVAL:
      return "not a regular file or a bad path";
    default: {
      /* strerror may write into a shared buffer; this runs on several
       * threads at once, and strerrordesc_np only returns constants. */
      const char *desc = strerrordesc_np(err);
      return desc ? desc : "unknown error";
    }
  }
}
