/* Small file reads and writes on the libuv thread pool, so the loop never
 * blocks on a disk (or a hung volume). */
#ifndef ARGOWAIT_FSJOB_H
#define ARGOWAIT_FSJOB_H

#include <stddef.h>

#include <uv.h>

#include "argowait/safefile.h"

/* err is 0 or a negative errno; on success the callee owns data (free with
 * aw_bytes_free). */
typedef void (*aw_fs_read_cb)(int err, aw_bytes *data, void *arg);
typedef void (*aw_fs_write_cb)(int err, void *arg);

/* Reads base_dir/rel safely (aw_read_beneath) with a cap. */
int aw_fs_read_small(uv_loop_t *loop, const char *base_dir, const char *rel,
                     size_t cap, aw_fs_read_cb cb, void *arg);
/* Reads at most the last tail bytes of base_dir/rel (aw_read_tail_beneath):
 * for files that only grow, like the progress file. */
int aw_fs_read_tail(uv_loop_t *loop, const char *base_dir, const char *rel,
                    size_t tail, aw_fs_read_cb cb, void *arg);
/* Reads a kubelet-managed file (aw_read_trusted), e.g. the rotating token. */
int aw_fs_read_trusted(uv_loop_t *loop, const char *path, size_t cap, aw_fs_read_cb cb, void *arg);
/* Writes data to path (created or truncated) with mode, then fchmod to mode
 * so the umask does not narrow it. cb may be NULL. */
int aw_fs_write_small(uv_loop_t *loop, const char *path, const char *data,
                      size_t len, int mode, aw_fs_write_cb cb, void *arg);

#endif
