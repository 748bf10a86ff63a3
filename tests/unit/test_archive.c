/* Artifact archives: layout, streaming, symlinks never followed (P8), special
 * files skipped, and hostile archives refused on extraction. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argowait/archive.h"
#include "tmptree.h"

#define SECRET "TOPSECRET-do-not-leak"

typedef struct {
  char root[64];
  char base[96];   /* what we archive beneath */
  char out[128];   /* the archive we write */
  char secret[128];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  strcpy(f->root, "/tmp/aw-archive-XXXXXX");
  assert_non_null(mkdtemp(f->root));
  pj(f->base, sizeof(f->base), f->root, "base");
  assert_int_equal(mkdir(f->base, 0755), 0);
  pj(f->out, sizeof(f->out), f->root, "out.tgz");
  pj(f->secret, sizeof(f->secret), f->root, "secret");
  write_file(f->root, "secret", SECRET, strlen(SECRET));
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  remove_tree(f->root);
  free(f);
  return 0;
}

/* ---- reading an archive back ---- */

typedef struct {
  char name[256];
  mode_t type;
  char link[256];
  char *data;
  size_t len;
} entry;

typedef struct {
  entry e[64];
  int n;
} listing;

static void read_archive(const char *path, listing *l) {
  memset(l, 0, sizeof(*l));
  struct archive *a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  assert_int_equal(archive_read_open_filename(a, path, 10240), ARCHIVE_OK);
  struct archive_entry *ae;
  while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
    assert_true(l->n < 64);
    entry *e = &l->e[l->n++];
    snprintf(e->name, sizeof(e->name), "%s", archive_entry_pathname(ae));
    e->type = archive_entry_filetype(ae);
    if (archive_entry_symlink(ae)) snprintf(e->link, sizeof(e->link), "%s", archive_entry_symlink(ae));
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
      e->data = realloc(e->data, e->len + (size_t)n + 1);
      memcpy(e->data + e->len, buf, (size_t)n);
      e->len += (size_t)n;
      e->data[e->len] = '\0';
    }
    assert_true(n == 0);
  }
  archive_read_free(a);
}

static void free_listing(listing *l) {
  for (int i = 0; i < l->n; i++) free(l->e[i].data);
}

static const entry *find(const listing *l, const char *name) {
  for (int i = 0; i < l->n; i++)
    if (strcmp(l->e[i].name, name) == 0) return &l->e[i];
  return NULL;
}

static bool listing_mentions(const listing *l, const char *needle) {
  for (int i = 0; i < l->n; i++)
    if (l->e[i].data && memmem(l->e[i].data, l->e[i].len, needle, strlen(needle))) return true;
  return false;
}

/* ---- creating ---- */

static void test_single_file(void **state) {
  fixture *f = *state;
  mkdir_in(f->base, "out");
  write_file(f->base, "out/result.txt", "hello\n", 6);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "out/result.txt", f->out, -1, &st, &err), 0);
  assert_null(err);
  listing l;
  read_archive(f->out, &l);
  assert_int_equal(l.n, 1);
  assert_string_equal(l.e[0].name, "result.txt");
  assert_int_equal(l.e[0].type, AE_IFREG);
  assert_int_equal(l.e[0].len, 6);
  assert_memory_equal(l.e[0].data, "hello\n", 6);
  assert_int_equal(st.files, 1);
  assert_int_equal(st.bytes, 6);
  free_listing(&l);
  aw_archive_stats_free(&st);
}

static void make_tree(const fixture *f) {
  mkdir_in(f->base, "data");
  write_file(f->base, "data/a.txt", "alpha", 5);
  mkdir_in(f->base, "data/sub");
  write_file(f->base, "data/sub/b.txt", "beta", 4);
  write_file(f->base, "data/sub/empty", "", 0);
  mkdir_in(f->base, "data/sub/deeper");
  write_file(f->base, "data/sub/deeper/c.bin", "\0\1\2\3", 4);
}

static void test_folder_round_trip(void **state) {
  fixture *f = *state;
  make_tree(f);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "data", f->out, 9, &st, &err), 0);
  listing l;
  read_archive(f->out, &l);
  /* root + sub + deeper folders, four files */
  assert_int_equal(l.n, 7);
  assert_non_null(find(&l, "data/"));
  assert_int_equal(find(&l, "data/")->type, AE_IFDIR);
  assert_non_null(find(&l, "data/sub/"));
  assert_non_null(find(&l, "data/sub/deeper/"));
  assert_memory_equal(find(&l, "data/a.txt")->data, "alpha", 5);
  assert_memory_equal(find(&l, "data/sub/b.txt")->data, "beta", 4);
  assert_int_equal(find(&l, "data/sub/empty")->len, 0);
  assert_memory_equal(find(&l, "data/sub/deeper/c.bin")->data, "\0\1\2\3", 4);
  assert_int_equal(st.files, 4);
  assert_int_equal(st.dirs, 3);
  free_listing(&l);
  aw_archive_stats_free(&st);
}

static void test_large_file_streamed(void **state) {
  fixture *f = *state;
  /* 3 MiB + 5: several chunks and a ragged end. */
  size_t len = 3u * 1024u * 1024u + 5u;
  char *big = malloc(len);
  for (size_t i = 0; i < len; i++) big[i] = (char)(i * 7u + (i >> 13));
  write_file(f->base, "big.bin", big, len);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "big.bin", f->out, 1, &st, &err), 0);
  listing l;
  read_archive(f->out, &l);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.e[0].len, len);
  assert_memory_equal(l.e[0].data, big, len);
  free_listing(&l);
  free(big);
  aw_archive_stats_free(&st);
}

static void test_symlinks_stored_not_followed(void **state) {
  fixture *f = *state;
  make_tree(f);
  /* One link leaves the folder (to the secret beside it), one stays in, one
   * points at a folder outside. */
  symlink_in(f->base, "data/leak", f->secret);
  symlink_in(f->base, "data/rel-leak", "../../secret");
  symlink_in(f->base, "data/inner", "a.txt");
  symlink_in(f->base, "data/outdir", f->root);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "data", f->out, -1, &st, &err), 0);
  listing l;
  read_archive(f->out, &l);
  const entry *e = find(&l, "data/leak");
  assert_non_null(e);
  assert_int_equal(e->type, AE_IFLNK);
  assert_string_equal(e->link, f->secret);
  assert_int_equal(e->len, 0);
  assert_string_equal(find(&l, "data/rel-leak")->link, "../../secret");
  assert_string_equal(find(&l, "data/inner")->link, "a.txt");
  assert_int_equal(find(&l, "data/outdir")->type, AE_IFLNK);
  /* Nothing beneath the outside folder was walked. */
  for (int i = 0; i < l.n; i++) assert_null(strstr(l.e[i].name, "data/outdir/"));
  assert_false(listing_mentions(&l, SECRET));
  assert_int_equal(st.symlinks, 4);
  free_listing(&l);

  /* zip: files only, links skipped. */
  char zip[160];
  pj(zip, sizeof(zip), f->root, "out.zip");
  aw_archive_stats zst;
  aw_archive_stats_init(&zst);
  assert_int_equal(aw_archive_zip(f->base, "data", zip, &zst, &err), 0);
  read_archive(zip, &l);
  assert_int_equal(l.n, 4);
  assert_memory_equal(find(&l, "data/a.txt")->data, "alpha", 5);
  assert_memory_equal(find(&l, "data/sub/deeper/c.bin")->data, "\0\1\2\3", 4);
  assert_null(find(&l, "data/leak"));
  assert_false(listing_mentions(&l, SECRET));
  assert_int_equal(zst.skipped, 4);
  free_listing(&l);
  aw_archive_stats_free(&zst);
  aw_archive_stats_free(&st);
}

static void test_symlink_as_the_path(void **state) {
  fixture *f = *state;
  /* The artifact path itself is a link to the secret: stored as a link. */
  symlink_in(f->base, "out", f->secret);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "out", f->out, -1, &st, &err), 0);
  listing l;
  read_archive(f->out, &l);
  assert_int_equal(l.n, 1);
  assert_int_equal(l.e[0].type, AE_IFLNK);
  assert_false(listing_mentions(&l, SECRET));
  free_listing(&l);
  aw_archive_stats_free(&st);
}

static void test_symlink_on_the_way_refused(void **state) {
  fixture *f = *state;
  /* base/via -> root: "via/secret" would reach the secret. */
  symlink_in(f->base, "via", f->root);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  int rc = aw_archive_tgz(f->base, "via/secret", f->out, -1, &st, &err);
  assert_int_equal(rc, -ELOOP);
  assert_non_null(err);
  free(err);
  err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "../secret", f->out, -1, &st, &err), -EINVAL);
  free(err);
  err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "/secret", f->out, -1, &st, &err), -EINVAL);
  free(err);
  err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "missing", f->out, -1, &st, &err), -ENOENT);
  assert_non_null(strstr(err, "missing"));
  free(err);
  aw_archive_stats_free(&st);
}

static void test_special_files_skipped(void **state) {
  fixture *f = *state;
  make_tree(f);
  char p[256];
  pj(p, sizeof(p), f->base, "data/fifo");
  assert_int_equal(mkfifo(p, 0644), 0);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "data", f->out, -1, &st, &err), 0);
  assert_int_equal(st.skipped, 1);
  assert_int_equal(st.warnings.count, 1);
  assert_non_null(strstr(st.warnings.items[0], "data/fifo"));
  listing l;
  read_archive(f->out, &l);
  assert_null(find(&l, "data/fifo"));
  assert_int_equal(l.n, 7);
  free_listing(&l);
  aw_archive_stats_free(&st);
}

/* ---- extraction ---- */

typedef struct {
  const char *name;
  mode_t type;
  const char *link;
  const char *data;
} spec_entry;

static void write_tgz(const char *path, const spec_entry *entries, int n) {
  struct archive *a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_gzip(a);
  assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
  for (int i = 0; i < n; i++) {
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, entries[i].name);
    archive_entry_set_filetype(e, entries[i].type);
    archive_entry_set_perm(e, entries[i].type == AE_IFDIR ? 0755 : 0644);
    size_t len = entries[i].data ? strlen(entries[i].data) : 0;
    archive_entry_set_size(e, (la_int64_t)len);
    if (entries[i].link) archive_entry_set_symlink(e, entries[i].link);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (len) assert_int_equal(archive_write_data(a, entries[i].data, len), (la_ssize_t)len);
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

static void read_back(const char *dir, const char *rel, char *buf, size_t size) {
  char p[512];
  pj(p, sizeof(p), dir, rel);
  int fd = open(p, O_RDONLY | O_NOFOLLOW);
  assert_true(fd >= 0);
  ssize_t n = read(fd, buf, size - 1);
  assert_true(n >= 0);
  buf[n] = '\0';
  close(fd);
}

static void test_untar_round_trip(void **state) {
  fixture *f = *state;
  make_tree(f);
  symlink_in(f->base, "data/inner", "a.txt");
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_equal(aw_archive_tgz(f->base, "data", f->out, -1, &st, &err), 0);
  char dest[160];
  pj(dest, sizeof(dest), f->root, "dest");
  assert_int_equal(mkdir(dest, 0755), 0);
  aw_archive_stats xst;
  aw_archive_stats_init(&xst);
  assert_int_equal(aw_archive_untar(f->out, dest, &xst, &err), 0);
  assert_null(err);
  char buf[64];
  read_back(dest, "data/a.txt", buf, sizeof(buf));
  assert_string_equal(buf, "alpha");
  read_back(dest, "data/sub/deeper/c.bin", buf, sizeof(buf));
  assert_memory_equal(buf, "\0\1\2\3", 4);
  char p[256], link[64];
  pj(p, sizeof(p), dest, "data/inner");
  ssize_t n = readlink(p, link, sizeof(link) - 1);
  assert_int_equal(n, 5);
  assert_int_equal(xst.files, 4);
  assert_int_equal(xst.dirs, 3);
  assert_int_equal(xst.symlinks, 1);
  aw_archive_stats_free(&xst);
  aw_archive_stats_free(&st);
}

static void expect_refused(fixture *f, const spec_entry *entries, int n, const char *outside) {
  write_tgz(f->out, entries, n);
  char dest[160];
  pj(dest, sizeof(dest), f->root, "dest");
  mkdir(dest, 0755);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  int rc = aw_archive_untar(f->out, dest, &st, &err);
  assert_int_not_equal(rc, 0);
  assert_non_null(err);
  assert_non_null(strstr(err, "refused"));
  free(err);
  if (outside) {
    struct stat sb;
    assert_int_not_equal(lstat(outside, &sb), 0);
  }
  /* The secret beside the folder is untouched. */
  char buf[64];
  read_back(f->root, "secret", buf, sizeof(buf));
  assert_string_equal(buf, SECRET);
  aw_archive_stats_free(&st);
}

static void test_untar_dotdot_refused(void **state) {
  fixture *f = *state;
  char outside[160];
  pj(outside, sizeof(outside), f->root, "evil");
  spec_entry e[] = {{"ok.txt", AE_IFREG, NULL, "fine"}, {"../evil", AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e, 2, outside);
  spec_entry e2[] = {{"a/../../evil", AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e2, 1, outside);
  spec_entry e3[] = {{"../secret", AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e3, 1, NULL);
}

static void test_untar_absolute_refused(void **state) {
  fixture *f = *state;
  char abs[160];
  pj(abs, sizeof(abs), f->root, "abs-evil");
  spec_entry e[] = {{abs, AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e, 1, abs);
  spec_entry e2[] = {{f->secret, AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e2, 1, NULL);
}

static void test_untar_symlink_traversal_refused(void **state) {
  fixture *f = *state;
  /* A link to the parent folder, then a file written "through" it. */
  spec_entry e[] = {{"link", AE_IFLNK, f->root, NULL}, {"link/secret", AE_IFREG, NULL, "pwned"}};
  expect_refused(f, e, 2, NULL);
  spec_entry e2[] = {{"l2", AE_IFLNK, "..", NULL}, {"l2/evil2", AE_IFREG, NULL, "pwned"}};
  char outside[160];
  pj(outside, sizeof(outside), f->root, "evil2");
  expect_refused(f, e2, 2, outside);
}

static void test_untar_garbage(void **state) {
  fixture *f = *state;
  write_file(f->root, "junk.tgz", "this is not an archive at all", 29);
  char junk[160], dest[160];
  pj(junk, sizeof(junk), f->root, "junk.tgz");
  pj(dest, sizeof(dest), f->root, "dest");
  mkdir(dest, 0755);
  aw_archive_stats st;
  aw_archive_stats_init(&st);
  char *err = NULL;
  assert_int_not_equal(aw_archive_untar(junk, dest, &st, &err), 0);
  assert_non_null(err);
  free(err);
  aw_archive_stats_free(&st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_single_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_folder_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_large_file_streamed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlinks_stored_not_followed, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlink_as_the_path, setup, teardown),
      cmocka_unit_test_setup_teardown(test_symlink_on_the_way_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_special_files_skipped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_untar_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_untar_dotdot_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_untar_absolute_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_untar_symlink_traversal_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_untar_garbage, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
