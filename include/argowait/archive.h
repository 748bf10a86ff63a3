/* Artifact archives (libarchive). Every function here blocks on the disk:
 * run it on the libuv thread pool (uv_queue_work), never on the loop.
 *
 * Sources live in a folder the main container controls (P8): the path is
 * opened beneath a base folder one component at a time with O_NOFOLLOW, a
 * symlink is stored as a symlink (tar) or skipped (zip) and never followed,
 * and special files (FIFO, socket, device) are skipped with a warning.
 * Regular files are streamed in chunks: memory does not grow with their size.
 *
 * Layout (as Argo's executor): a single file is one entry named
 * basename(rel); a folder is its own entry "basename(rel)/" followed by
 * "basename(rel)/<relative path>" for everything beneath it.
 *
 * Functions return 0 or a negative errno, and on failure set *err (malloc'd,
 * one line naming the path; never NULL on failure when err is given). */
#ifndef ARGOWAIT_ARCHIVE_H
#define ARGOWAIT_ARCHIVE_H

#include <stdint.h>

#include "argowait/strbuf.h"

#define AW_ARCHIVE_MAX_DEPTH 128      /* folder nesting; deeper is an error */
#define AW_ARCHIVE_MAX_WARNINGS 16    /* further warnings are only counted */

typedef struct {
  unsigned files;    /* regular files stored / extracted */
  unsigned dirs;
  unsigned symlinks; /* stored as links (never followed) */
  unsigned skipped;  /* special files, symlinks in a zip, hard links */
  uint64_t bytes;    /* file content bytes */
  aw_reasons warnings; /* at most AW_ARCHIVE_MAX_WARNINGS lines */
  unsigned warnings_dropped;
} aw_archive_stats;

void aw_archive_stats_init(aw_archive_stats *st);
void aw_archive_stats_free(aw_archive_stats *st);

/* tar + gzip of base_dir/rel into out_path (created or truncated, mode
 * 0644, never through a symlink). level: 0..9, or -1 for gzip's default.
 * rel is relative, without "..", and names a file or a folder. */
int aw_archive_tgz(const char *base_dir, const char *rel, const char *out_path,
                   int level, aw_archive_stats *st, char **err);

/* zip (deflate) of base_dir/rel into out_path: regular files only, with the
 * same names as the tar; symlinks and special files are skipped. */
int aw_archive_zip(const char *base_dir, const char *rel, const char *out_path,
                   aw_archive_stats *st, char **err);

/* Extracts a tar (gzip or not) into dest_dir, which must exist. Refuses the
 * whole archive (-EINVAL) at the first entry with an absolute name or a ".."
 * component; never writes through a symlink (libarchive's secure-symlink and
 * no-dot-dot checks); skips hard links and special files with a warning; no
 * owners, no set-id bits. Files already extracted stay when it fails. */
int aw_archive_untar(const char *archive_path, const char *dest_dir,
                     aw_archive_stats *st, char **err);

#endif
