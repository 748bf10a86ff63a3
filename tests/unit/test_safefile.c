/* Safe reads beneath a folder that the main container controls (P8).
 *
 * The opening tests run three times: with aw_open_beneath on this kernel
 * (openat2), with aw_open_beneath_walk directly, and with aw_open_beneath
 * after a seccomp filter has made openat2 answer ENOSYS, so the fallback
 * decision and the read functions are covered on the walk as well. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "argowait/safefile.h"

#define SECRET "TOPSECRET-do-not-leak"

typedef int (*opener_fn)(int dirfd, const char *rel);

typedef struct {
  opener_fn open;
  /* openat2 with RESOLVE_BENEATH lets a symlink resolve when its target
   * stays inside; the walk refuses every symlink. */
  bool follows_inner_symlinks;
} opener;

static const opener OPENAT2 = {aw_open_beneath, true};
static const opener WALK = {aw_open_beneath_walk, false};
static const opener FALLBACK = {aw_open_beneath, false};

/* <tmp>/base is the folder we read beneath; <tmp>/secret lies beside it. */
typedef struct {
  const opener *op;
  char root[64];
  char base[96];
  int basefd;
} fixture;

/* ---- file helpers ---- */

static void path_join(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  assert_true(n > 0 && (size_t)n < size);
}

static void write_file(const char *dir, const char *rel, const void *data,
                       size_t len) {
  char path[512];
  path_join(path, sizeof(path), dir, rel);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static void write_text(const char *dir, const char *rel, const char *text) {
  write_file(dir, rel, text, strlen(text));
}

static void make_dir(const char *dir, const char *rel) {
  char path[512];
  path_join(path, sizeof(path), dir, rel);
  assert_int_equal(mkdir(path, 0755), 0);
}

static void make_symlink(const char *target, const char *dir, const char *rel) {
  char path[512];
  path_join(path, sizeof(path), dir, rel);
  assert_int_equal(symlink(target, path), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void remove_tree(const char *path) {
  nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- fixture ---- */

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  f->op = *state;
  strcpy(f->root, "/tmp/aw-safefile-XXXXXX");
  assert_non_null(mkdtemp(f->root));
  path_join(f->base, sizeof(f->base), f->root, "base");
  assert_int_equal(mkdir(f->base, 0755), 0);
  write_text(f->root, "secret", SECRET);
  f->basefd = open(f->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  assert_true(f->basefd >= 0);
  /* A FIFO that blocked open would hang the test; fail it loudly instead. */
  alarm(20);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  alarm(0);
  close(f->basefd);
  remove_tree(f->root);
  free(f);
  return 0;
}

/* Reads the whole fd and checks it holds exactly text; closes fd. */
static void assert_fd_holds(int fd, const char *text) {
  assert_true(fd >= 0);
  char buf[256];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  assert_true(n >= 0);
  buf[n] = '\0';
  assert_string_equal(buf, text);
}

static void assert_refused_as_escape(int rc) {
  if (rc >= 0) close(rc);
  assert_true(rc == -ELOOP || rc == -EXDEV);
}

/* ---- opening ---- */

static void opens_plain_file(void **state) {
  fixture *f = *state;
  write_text(f->base, "out.txt", "hello");
  assert_fd_holds(f->op->open(f->basefd, "out.txt"), "hello");
}

static void opens_nested_file(void **state) {
  fixture *f = *state;
  make_dir(f->base, "a");
  make_dir(f->base, "a/b");
  write_text(f->base, "a/b/c.txt", "nested");
  assert_fd_holds(f->op->open(f->basefd, "a/b/c.txt"), "nested");
  assert_fd_holds(f->op->open(f->basefd, "./a//b/./c.txt"), "nested");
}

static void refuses_absolute_symlink_outside(void **state) {
  fixture *f = *state;
  char secret[160];
  path_join(secret, sizeof(secret), f->root, "secret");
  make_symlink(secret, f->base, "leak");
  assert_refused_as_escape(f->op->open(f->basefd, "leak"));
}

static void refuses_relative_symlink_outside(void **state) {
  fixture *f = *state;
  make_symlink("../secret", f->base, "leak");
  assert_refused_as_escape(f->op->open(f->basefd, "leak"));
}

static void refuses_symlinked_folder_outside(void **state) {
  fixture *f = *state;
  make_symlink(f->root, f->base, "up");
  make_symlink("..", f->base, "dotdot");
  assert_refused_as_escape(f->op->open(f->basefd, "up/secret"));
  assert_refused_as_escape(f->op->open(f->basefd, "dotdot/secret"));
}

static void refuses_symlink_to_proc_magic_link(void **state) {
  fixture *f = *state;
  make_symlink("/proc/self/root/etc/hostname", f->base, "magic");
  assert_refused_as_escape(f->op->open(f->basefd, "magic"));
}

static void symlink_inside_folder_follows_opener_rules(void **state) {
  fixture *f = *state;
  make_dir(f->base, "d");
  write_text(f->base, "d/real.txt", "inside");
  make_symlink("real.txt", f->base, "d/link.txt");
  make_symlink("d", f->base, "dlink");
  int fd = f->op->open(f->basefd, "d/link.txt");
  int fd2 = f->op->open(f->basefd, "dlink/real.txt");
  if (f->op->follows_inner_symlinks) {
    assert_fd_holds(fd, "inside");
    assert_fd_holds(fd2, "inside");
  } else {
    assert_int_equal(fd, -ELOOP);
    assert_int_equal(fd2, -ELOOP);
  }
}

static void refuses_dotdot_in_rel(void **state) {
  fixture *f = *state;
  make_dir(f->base, "a");
  write_text(f->base, "x", "x");
  assert_int_equal(f->op->open(f->basefd, "../secret"), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, "a/../x"), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, "a/.."), -EINVAL);
}

static void refuses_bad_rel(void **state) {
  fixture *f = *state;
  char secret[160];
  path_join(secret, sizeof(secret), f->root, "secret");
  assert_int_equal(f->op->open(f->basefd, ""), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, secret), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, "."), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, "./"), -EINVAL);
  assert_int_equal(f->op->open(f->basefd, NULL), -EINVAL);
}

static void refuses_fifo_without_blocking(void **state) {
  fixture *f = *state;
  char path[512];
  path_join(path, sizeof(path), f->base, "pipe");
  assert_int_equal(mkfifo(path, 0644), 0);
  assert_int_equal(f->op->open(f->basefd, "pipe"), -EINVAL);
}

static void refuses_directory(void **state) {
  fixture *f = *state;
  make_dir(f->base, "dir");
  assert_int_equal(f->op->open(f->basefd, "dir"), -EISDIR);
}

static void reports_missing_file(void **state) {
  fixture *f = *state;
  make_dir(f->base, "a");
  assert_int_equal(f->op->open(f->basefd, "nope"), -ENOENT);
  assert_int_equal(f->op->open(f->basefd, "a/nope"), -ENOENT);
  assert_int_equal(f->op->open(f->basefd, "nope/x"), -ENOENT);
}

static void refuses_file_as_folder(void **state) {
  fixture *f = *state;
  write_text(f->base, "file", "x");
  assert_int_equal(f->op->open(f->basefd, "file/x"), -ENOTDIR);
}

static void refuses_overlong_component(void **state) {
  fixture *f = *state;
  char rel[600];
  memset(rel, 'n', 300);
  strcpy(rel + 300, "/x");
  assert_int_equal(f->op->open(f->basefd, rel), -ENAMETOOLONG);
  rel[300] = '\0';
  assert_int_equal(f->op->open(f->basefd, rel), -ENAMETOOLONG);
}

/* ---- reading (through aw_open_beneath) ---- */

static void reads_whole_file(void **state) {
  fixture *f = *state;
  make_dir(f->base, "tmp");
  write_text(f->base, "tmp/x", "value\n");
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath(f->base, "tmp/x", 100, &b), 0);
  assert_int_equal(b.len, 6);
  assert_string_equal(b.data, "value\n");
  aw_bytes_free(&b);
  assert_null(b.data);
}

static void read_refuses_escape(void **state) {
  fixture *f = *state;
  make_symlink("../secret", f->base, "leak");
  aw_bytes b = {0};
  int rc = aw_read_beneath(f->base, "leak", 100, &b);
  assert_true(rc == -ELOOP || rc == -EXDEV);
  assert_null(b.data);
  bool cut = true;
  rc = aw_read_tail_beneath(f->base, "leak", 100, &b, &cut);
  assert_true(rc == -ELOOP || rc == -EXDEV);
  assert_null(b.data);
}

static void read_cap_exceeded_is_efbig(void **state) {
  fixture *f = *state;
  char data[5000];
  memset(data, 'a', sizeof(data));
  write_file(f->base, "big", data, sizeof(data));
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath(f->base, "big", sizeof(data) - 1, &b),
                   -EFBIG);
  assert_null(b.data);
  assert_int_equal(aw_read_beneath(f->base, "big", sizeof(data), &b), 0);
  assert_int_equal(b.len, sizeof(data));
  assert_memory_equal(b.data, data, sizeof(data));
  aw_bytes_free(&b);
  assert_int_equal(aw_read_beneath(f->base, "big", 0, &b), -EFBIG);
}

static void read_empty_file(void **state) {
  fixture *f = *state;
  write_text(f->base, "empty", "");
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath(f->base, "empty", 0, &b), 0);
  assert_non_null(b.data);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  aw_bytes_free(&b);
  bool cut = true;
  assert_int_equal(aw_read_tail_beneath(f->base, "empty", 10, &b, &cut), 0);
  assert_non_null(b.data);
  assert_int_equal(b.len, 0);
  assert_false(cut);
  aw_bytes_free(&b);
}

static void read_keeps_nul_bytes(void **state) {
  fixture *f = *state;
  write_file(f->base, "bin", "a\0b", 3);
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath(f->base, "bin", 10, &b), 0);
  assert_int_equal(b.len, 3);
  assert_memory_equal(b.data, "a\0b", 4);
  aw_bytes_free(&b);
}

static void read_does_not_trust_st_size(void **state) {
  (void)state;
  /* /proc files claim a size of 0 but have content. */
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath("/proc/self", "status", 1u << 20, &b), 0);
  assert_true(b.len > 0);
  assert_non_null(strstr(b.data, "Name:"));
  aw_bytes_free(&b);
}

static void read_missing_base_folder(void **state) {
  fixture *f = *state;
  char missing[160];
  path_join(missing, sizeof(missing), f->root, "nope");
  aw_bytes b = {0};
  assert_int_equal(aw_read_beneath(missing, "x", 10, &b), -ENOENT);
}

static void tail_of_bigger_file(void **state) {
  fixture *f = *state;
  char data[10000];
  for (size_t i = 0; i < sizeof(data); i++) data[i] = (char)('a' + i % 26);
  write_file(f->base, "log", data, sizeof(data));
  aw_bytes b = {0};
  bool cut = false;
  assert_int_equal(aw_read_tail_beneath(f->base, "log", 100, &b, &cut), 0);
  assert_true(cut);
  assert_int_equal(b.len, 100);
  assert_memory_equal(b.data, data + sizeof(data) - 100, 100);
  assert_int_equal(b.data[100], '\0');
  aw_bytes_free(&b);

  assert_int_equal(aw_read_tail_beneath(f->base, "log", sizeof(data), &b, &cut),
                   0);
  assert_false(cut);
  assert_int_equal(b.len, sizeof(data));
  assert_memory_equal(b.data, data, sizeof(data));
  aw_bytes_free(&b);

  assert_int_equal(aw_read_tail_beneath(f->base, "log", 0, &b, &cut), 0);
  assert_true(cut);
  assert_int_equal(b.len, 0);
  aw_bytes_free(&b);
}

/* A writer appends a counting pattern while the tail is read: whatever the
 * timing, the result is at most tail bytes and one unbroken run of the
 * pattern (the ring is put back in order). */
typedef struct {
  char path[512];
  atomic_int stop;
} appender;

static void *append_pattern(void *arg) {
  appender *a = arg;
  int fd = open(a->path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return NULL;
  unsigned char chunk[4096];
  unsigned counter = 5000;
  for (int round = 0; round < 2000 && !a->stop; round++) {
    for (size_t i = 0; i < sizeof(chunk); i++)
      chunk[i] = (unsigned char)(counter++ % 251);
    if (write(fd, chunk, sizeof(chunk)) < 0) break;
  }
  close(fd);
  return NULL;
}

static void assert_counting_run(const aw_bytes *b) {
  for (size_t i = 1; i < b->len; i++)
    assert_int_equal((unsigned char)b->data[i],
                     ((unsigned char)b->data[i - 1] + 1) % 251);
}

static void tail_while_file_grows(void **state) {
  fixture *f = *state;
  unsigned char start[5000];
  for (size_t i = 0; i < sizeof(start); i++)
    start[i] = (unsigned char)(i % 251);
  write_file(f->base, "grow", start, sizeof(start));
  appender a;
  atomic_init(&a.stop, 0);
  path_join(a.path, sizeof(a.path), f->base, "grow");
  pthread_t thread;
  assert_int_equal(pthread_create(&thread, NULL, append_pattern, &a), 0);
  for (int i = 0; i < 200; i++) {
    aw_bytes b = {0};
    bool cut = false;
    assert_int_equal(aw_read_tail_beneath(f->base, "grow", 777, &b, &cut), 0);
    assert_true(cut);
    assert_true(b.len <= 777);
    assert_counting_run(&b);
    aw_bytes_free(&b);
  }
  a.stop = 1;
  pthread_join(thread, NULL);
}

static void strerror_names_escapes(void **state) {
  (void)state;
  const char *escape = "refusing a symlink or path that leaves its folder";
  assert_string_equal(aw_safefile_strerror(-ELOOP), escape);
  assert_string_equal(aw_safefile_strerror(-EXDEV), escape);
  assert_string_equal(aw_safefile_strerror(-EFBIG),
                      "file is larger than the read limit");
  assert_string_equal(aw_safefile_strerror(-ENOENT), "no such file");
  assert_string_equal(aw_safefile_strerror(-EINVAL),
                      "not a regular file or a bad path");
  assert_string_equal(aw_safefile_strerror(-EACCES), strerror(EACCES));
  assert_non_null(aw_safefile_strerror(-99999));
}

/* ---- test lists ---- */

#define OPEN_TEST(prefix, fn, op) \
  { prefix "/" #fn, fn, setup, teardown, (void *)(op) }

#define OPEN_TESTS(prefix, op)                                      \
  OPEN_TEST(prefix, opens_plain_file, op),                          \
      OPEN_TEST(prefix, opens_nested_file, op),                     \
      OPEN_TEST(prefix, refuses_absolute_symlink_outside, op),      \
      OPEN_TEST(prefix, refuses_relative_symlink_outside, op),      \
      OPEN_TEST(prefix, refuses_symlinked_folder_outside, op),      \
      OPEN_TEST(prefix, refuses_symlink_to_proc_magic_link, op),    \
      OPEN_TEST(prefix, symlink_inside_folder_follows_opener_rules, \
                op),                                                \
      OPEN_TEST(prefix, refuses_dotdot_in_rel, op),                 \
      OPEN_TEST(prefix, refuses_bad_rel, op),                       \
      OPEN_TEST(prefix, refuses_fifo_without_blocking, op),         \
      OPEN_TEST(prefix, refuses_directory, op),                     \
      OPEN_TEST(prefix, reports_missing_file, op),                  \
      OPEN_TEST(prefix, refuses_file_as_folder, op),                \
      OPEN_TEST(prefix, refuses_overlong_component, op)

#define READ_TESTS(prefix, op)                              \
  OPEN_TEST(prefix, reads_whole_file, op),                  \
      OPEN_TEST(prefix, read_refuses_escape, op),           \
      OPEN_TEST(prefix, read_cap_exceeded_is_efbig, op),    \
      OPEN_TEST(prefix, read_empty_file, op),               \
      OPEN_TEST(prefix, read_keeps_nul_bytes, op),          \
      OPEN_TEST(prefix, read_does_not_trust_st_size, op),   \
      OPEN_TEST(prefix, read_missing_base_folder, op),      \
      OPEN_TEST(prefix, tail_of_bigger_file, op),           \
      OPEN_TEST(prefix, tail_while_file_grows, op)

/* Makes openat2 answer ENOSYS for the rest of this process, as an old
 * kernel or a strict container runtime would. Returns false where that
 * cannot be arranged. */
static bool hide_openat2(void) {
#if defined(SYS_openat2) && defined(__x86_64__)
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]),
                            .filter = code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
  return false;
#endif
}

int main(void) {
  const struct CMUnitTest native[] = {
      OPEN_TESTS("openat2", &OPENAT2),
      READ_TESTS("openat2", &OPENAT2),
      cmocka_unit_test(strerror_names_escapes),
  };
  const struct CMUnitTest walk[] = {
      OPEN_TESTS("walk", &WALK),
  };
  const struct CMUnitTest fallback[] = {
      OPEN_TESTS("fallback", &FALLBACK),
      READ_TESTS("fallback", &FALLBACK),
  };
  int failed = cmocka_run_group_tests_name("safefile", native, NULL, NULL);
  failed += cmocka_run_group_tests_name("safefile_walk", walk, NULL, NULL);
  if (hide_openat2()) {
    failed += cmocka_run_group_tests_name("safefile_without_openat2",
                                          fallback, NULL, NULL);
  } else {
    fprintf(stderr, "seccomp unavailable: fallback group skipped\n");
  }
  return failed;
}
