/* A file as the body of an HTTP upload, read from disk on the thread pool.
 *
 * Pool jobs read the file in AW_FILESTREAM_CHUNK pieces into a ring of
 * AW_FILESTREAM_SLOTS buffers; curl takes them through its read callback and
 * pauses the transfer when none is ready; the job that fills a buffer
 * resumes it. So the loop never blocks on the disk, and an upload holds at
 * most SLOTS x CHUNK bytes of the file whatever its size. Every attempt
 * starts at the beginning of the file; a read still in flight for an older
 * attempt is recognised and dropped.
 *
 * Loop thread only. (src/s3.c has its own copy of this ring for part
 * ranges; it can move onto this module.) */
#ifndef ARGOWAIT_FILESTREAM_H
#define ARGOWAIT_FILESTREAM_H

#include <stdint.h>

#include <curl/curl.h>
#include <uv.h>

#define AW_FILESTREAM_CHUNK (256u * 1024u)
#define AW_FILESTREAM_SLOTS 4

typedef struct aw_filestream aw_filestream;

/* Takes over fd (closed on free); len bytes from offset 0 are sent. */
aw_filestream *aw_filestream_new(uv_loop_t *loop, int fd, uint64_t len);

/* Starts an attempt from the first byte and sets the upload options on easy
 * (CURLOPT_UPLOAD, the size, the read callback). Call it from the request's
 * configure hook. */
void aw_filestream_attach(aw_filestream *fs, CURL *easy);

/* The attempt is over (answered, failed or cancelled): the handle is never
 * touched again. */
void aw_filestream_detach(aw_filestream *fs);

/* 0, or the negative errno of a read that failed (-ENODATA: the file shrank
 * while it was sent). A failed read aborts the transfer. */
int aw_filestream_error(const aw_filestream *fs);

/* Buffers allocated now, in bytes (for tests and benchmarks). */
uint64_t aw_filestream_buffer_bytes(const aw_filestream *fs);

/* Frees it now, or when the read in flight returns (a pool job cannot be
 * called back). */
void aw_filestream_free(aw_filestream *fs);

#endif
