/* Scratch folder trees for the unit tests that read files (archive, dirlist):
 * paths joined with a length check, files, folders and symlinks made beneath
 * a folder, and the whole tree removed without following its symlinks.
 * Include after <cmocka.h>. */
#ifndef ARGOWAIT_TESTS_TMPTREE_H
#define ARGOWAIT_TESTS_TMPTREE_H

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline void pj(char *out, size_t size, const char *a, const char *b) {
  int n = snprintf(out, size, "%s/%s", a, b);
  assert_true(n > 0 && (size_t)n < size);
}

static inline void write_file(const char *dir, const char *rel, const char *data, size_t len) {
  char p[512];
  pj(p, sizeof(p), dir, rel);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, data, len), (ssize_t)len);
  close(fd);
}

static inline void write_text(const char *dir, const char *rel, const char *text) {
  write_file(dir, rel, text, strlen(text));
}

static inline void mkdir_in(const char *dir, const char *rel) {
  char p[512];
  pj(p, sizeof(p), dir, rel);
  assert_int_equal(mkdir(p, 0755), 0);
}

static inline void symlink_in(const char *dir, const char *rel, const char *target) {
  char p[512];
  pj(p, sizeof(p), dir, rel);
  assert_int_equal(symlink(target, p), 0);
}

static inline int tmptree_remove_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(p);
}

static inline void remove_tree(const char *root) {
  nftw(root, tmptree_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
