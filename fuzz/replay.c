/* Replays inputs through a fuzz target's LLVMFuzzerTestOneInput without
 * libFuzzer, so that the corpus and every crash that was ever found run as
 * ordinary regression tests in every build (gcc release, ASan+UBSan).
 *
 *   fuzz_replay_<target> PATH...
 *
 * A PATH is a file, or a folder whose files (not dot-files, not recursive)
 * are replayed in name order. A missing PATH is skipped with a note (an empty
 * regressions folder is not kept by git). A property violation aborts, which
 * ctest reports as a failure; the name of the input is printed first. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  size_t cap = 4096, len = 0;
  uint8_t *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      fclose(f);
      return -1;
    }
    size_t n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) break;
    if (len == cap) buf = realloc(buf, cap *= 2);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    fprintf(stderr, "replay: cannot read %s\n", path);
    return -1;
  }
  /* An exact-size copy, as libFuzzer gives it: reads past the end are
   * caught by ASan. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) abort();
  memcpy(exact, buf, len);
  free(buf);
  fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_dir(const char *dir, size_t *count) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char **grown = realloc(names, (n + 1) * sizeof(*names));
    if (!grown) abort();
    names = grown;
    names[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof(*names), by_name); /* names is NULL when n is 0 */
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    size_t plen = strlen(dir) + strlen(names[i]) + 2;
    char *path = malloc(plen);
    if (!path) abort();
    snprintf(path, plen, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (replay_file(path) != 0) rc = -1;
      else (*count)++;
    }
    free(path);
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE-OR-FOLDER...\n", argv[0]);
    return 2;
  }
  size_t count = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      fprintf(stderr, "replay: %s does not exist, skipped\n", argv[i]);
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      if (replay_dir(argv[i], &count) != 0) rc = 1;
    } else if (replay_file(argv[i]) != 0) {
      rc = 1;
    } else {
      count++;
    }
  }
  printf("replayed %zu inputs, all properties held\n", count);
  return rc;
}
