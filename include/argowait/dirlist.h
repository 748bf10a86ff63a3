/* The regular files of a folder that the main container controls (P8), for
 * an artifact saved without an archive (one object per file, as Argo's S3
 * driver does). Blocking: run it on the libuv thread pool, never on the loop.
 *
 * The folder is opened beneath a base folder one component at a time with
 * O_NOFOLLOW, and walked with openat(..., O_NOFOLLOW) from its descriptor:
 * no symlink is ever followed. Symlinks and special files (FIFO, socket,
 * device) are skipped with a warning. The listing is capped: a tree with
 * more files, longer names in total, or deeper nesting than the limits is
 * an error, never a partial list. */
#ifndef ARGOWAIT_DIRLIST_H
#define ARGOWAIT_DIRLIST_H

#include <stddef.h>
#include <stdint.h>

#include "argowait/strbuf.h"

#define AW_DIRLIST_MAX_FILES 10000u                 /* files of one folder artifact */
#define AW_DIRLIST_MAX_NAME_BYTES (4u * 1024u * 1024u) /* their relative paths, together */
#define AW_DIRLIST_MAX_DEPTH 128u                   /* folder nesting */
#define AW_DIRLIST_MAX_WARNINGS 16u                 /* further warnings are only counted */

typedef struct {
  size_t max_files;      /* 0: AW_DIRLIST_MAX_FILES */
  size_t max_name_bytes; /* 0: AW_DIRLIST_MAX_NAME_BYTES */
  unsigned max_depth;    /* 0: AW_DIRLIST_MAX_DEPTH */
} aw_dirlist_limits;

typedef struct {
  /* Paths relative to the folder, '/'-separated, in the order Go's
   * filepath.Walk visits them (aw_dirlist_compare). */
  char **files;
  size_t count;
  uint64_t bytes;          /* their sizes when listed */
  unsigned dirs;           /* folders beneath the folder */
  unsigned skipped;        /* symlinks and special files */
  aw_reasons warnings;     /* at most AW_DIRLIST_MAX_WARNINGS lines */
  unsigned warnings_dropped;
} aw_dirlist;

void aw_dirlist_init(aw_dirlist *l);
void aw_dirlist_free(aw_dirlist *l);

/* Lists the regular files beneath base_dir/rel, which must be a folder
 * reached without a symlink (rel relative, no ".."; base_dir is trusted).
 * limits may be NULL. Returns 0, or a negative errno with *err (malloc'd,
 * one line naming the path): -E2BIG past a limit, -ELOOP for a symlink on
 * the way to the folder, -ENOTDIR when it is not a folder. */
int aw_dirlist_files(const char *base_dir, const char *rel, const aw_dirlist_limits *limits,
                     aw_dirlist *out, char **err);

/* Byte order of the paths with '/' before every other byte: a folder's files
 * come right after the folder's name, as filepath.Walk (which sorts each
 * folder's names) lists them. */
int aw_dirlist_compare(const char *a, const char *b);

#endif
