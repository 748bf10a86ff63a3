/* Reading files that the main container controls (P8).
 *
 * A path is opened beneath a base folder and never leaves it: no "..", no
 * absolute path, and no symlink that points outside. Where the kernel has
 * openat2, RESOLVE_BENEATH lets symlinks that stay inside resolve; the
 * fallback walks one component at a time with O_NOFOLLOW and refuses every
 * symlink. Only regular files are read (a FIFO would block forever), and
 * every read is capped. Functions return 0 or a negative errno; ELOOP and
 * EXDEV mean "a symlink or path that leaves the folder". */
#ifndef ARGOWAIT_SAFEFILE_H
#define ARGOWAIT_SAFEFILE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *data; /* NUL-terminated (the NUL is not counted in len) */
  size_t len;
} aw_bytes;

void aw_bytes_free(aw_bytes *b);

/* Opens rel (relative, may contain '/', no "..") beneath dirfd for reading.
 * Returns an fd, or -errno (-ELOOP/-EXDEV for an escape, -EINVAL for a bad
 * rel, -EISDIR or -EINVAL for something that is not a regular file). */
int aw_open_beneath(int dirfd, const char *rel);
/* The portable fallback, exposed so tests cover it on any kernel. */
int aw_open_beneath_walk(int dirfd, const char *rel);

/* Reads the whole file base_dir/rel. More than cap bytes: -EFBIG. */
int aw_read_beneath(const char *base_dir, const char *rel, size_t cap,
                    aw_bytes *out);
/* Reads at most the last tail bytes; *cut says whether bytes were dropped
 * before them. */
int aw_read_tail_beneath(const char *base_dir, const char *rel, size_t tail,
                         aw_bytes *out, bool *cut);

/* Reads a file that the kubelet manages and the main container cannot
 * reach (the service-account token, a kubeconfig, ConfigMap and Secret
 * mounts). Those are symlinks into a "..data" folder by design, so symlinks
 * are followed here; the regular-file check and the cap still hold. */
int aw_read_trusted(const char *path, size_t cap, aw_bytes *out);

/* A short description of a negative errno from the functions above, with the
 * escape cases named as such. */
const char *aw_safefile_strerror(int neg_errno);

#endif
