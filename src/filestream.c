/* A file streamed to curl through a ring of buffers filled on the pool.
 *
 * One read runs at a time: it fills the next free slot with pread at the
 * offset the current attempt has reached. Slots that are ready queue up in
 * order; the read callback drains the head of the queue. gen counts
 * attempts so that a read which returns after a rewind is ignored. */
#include "argowait/filestream.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { SLOT_FREE, SLOT_READING, SLOT_READY };

struct aw_filestream {
  uv_loop_t *loop;
  int fd;
  uint64_t len;
  uint64_t read_off; /* bytes read (or being read) for this attempt */
  uint64_t sent;     /* bytes handed to curl in this attempt */
  char *slot[AW_FILESTREAM_SLOTS];
  size_t slot_len[AW_FILESTREAM_SLOTS], slot_pos[AW_FILESTREAM_SLOTS];
  int slot_state[AW_FILESTREAM_SLOTS];
  int queue[AW_FILESTREAM_SLOTS]; /* ready slots, oldest first */
  unsigned q_head, q_count;
  unsigned gen;
  int err;
  bool reading, paused, freed;
  CURL *easy;
  uint64_t buffer_bytes;
  /* The read in flight. */
  uv_work_t work;
  int w_slot;
  unsigned w_gen;
  uint64_t w_off;
  size_t w_want;
  int w_err;
};

static void free_now(aw_filestream *fs) {
  for (int i = 0; i < AW_FILESTREAM_SLOTS; i++) free(fs->slot[i]);
  if (fs->fd >= 0) close(fs->fd);
  free(fs);
}

aw_filestream *aw_filestream_new(uv_loop_t *loop, int fd, uint64_t len) {
  aw_filestream *fs = calloc(1, sizeof(*fs));
  if (!fs) return NULL;
  fs->loop = loop;
  fs->fd = fd;
  fs->len = len;
  fs->work.data = fs;
  return fs;
}

static void read_work(uv_work_t *w) {
  aw_filestream *fs = w->data;
  char *buf = fs->slot[fs->w_slot];
  size_t got = 0;
  fs->w_err = 0;
  while (got < fs->w_want) {
    ssize_t n = pread(fs->fd, buf + got, fs->w_want - got, (off_t)(fs->w_off + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      fs->w_err = n < 0 ? -errno : -ENODATA;
      break;
    }
    got += (size_t)n;
  }
}

static void resume_if_paused(aw_filestream *fs) {
  if (fs->paused && fs->easy && (fs->q_count || fs->err)) {
    fs->paused = false;
    curl_easy_pause(fs->easy, CURLPAUSE_CONT);
  }
}

static void read_next(aw_filestream *fs);

static void read_done(uv_work_t *w, int status) {
  aw_filestream *fs = w->data;
  fs->reading = false;
  if (fs->freed) {
    free_now(fs);
    return;
  }
  int slot = fs->w_slot;
  if (fs->w_gen != fs->gen) {
    fs->slot_state[slot] = SLOT_FREE; /* an older attempt's read */
  } else if (status != 0 || fs->w_err) {
    fs->slot_state[slot] = SLOT_FREE;
    fs->err = status != 0 ? -ECANCELED : fs->w_err;
  } else {
    fs->slot_state[slot] = SLOT_READY;
    fs->slot_len[slot] = fs->w_want;
    fs->slot_pos[slot] = 0;
    fs->queue[(fs->q_head + fs->q_count) % AW_FILESTREAM_SLOTS] = slot;
    fs->q_count++;
  }
  resume_if_paused(fs);
  read_next(fs);
}

static int free_slot(aw_filestream *fs) {
  for (int i = 0; i < AW_FILESTREAM_SLOTS; i++)
    if (fs->slot_state[i] == SLOT_FREE) return i;
  return -1;
}

static void read_next(aw_filestream *fs) {
  if (fs->reading || fs->freed || fs->err || fs->read_off >= fs->len) return;
  int slot = free_slot(fs);
  if (slot < 0) return;
  if (!fs->slot[slot]) {
    fs->slot[slot] = malloc(AW_FILESTREAM_CHUNK);
    if (!fs->slot[slot]) {
      fs->err = -ENOMEM;
      return;
    }
    fs->buffer_bytes += AW_FILESTREAM_CHUNK;
  }
  uint64_t left = fs->len - fs->read_off;
  fs->w_slot = slot;
  fs->w_gen = fs->gen;
  fs->w_off = fs->read_off;
  fs->w_want = left < AW_FILESTREAM_CHUNK ? (size_t)left : AW_FILESTREAM_CHUNK;
  fs->slot_state[slot] = SLOT_READING;
  if (uv_queue_work(fs->loop, &fs->work, read_work, read_done) != 0) {
    fs->slot_state[slot] = SLOT_FREE;
    fs->err = -EAGAIN;
    return;
  }
  fs->read_off += fs->w_want;
  fs->reading = true;
}

static size_t on_read(char *dst, size_t size, size_t nitems, void *arg) {
  aw_filestream *fs = arg;
  if (fs->err) return CURL_READFUNC_ABORT;
  if (fs->sent >= fs->len) return 0;
  if (fs->q_count == 0) {
    read_next(fs);
    if (fs->err) return CURL_READFUNC_ABORT;
    fs->paused = true;
    return CURL_READFUNC_PAUSE;
  }
  int slot = fs->queue[fs->q_head];
  size_t avail = fs->slot_len[slot] - fs->slot_pos[slot];
  size_t want = size * nitems;
  size_t n = want < avail ? want : avail;
  memcpy(dst, fs->slot[slot] + fs->slot_pos[slot], n);
  fs->slot_pos[slot] += n;
  fs->sent += n;
  if (fs->slot_pos[slot] == fs->slot_len[slot]) {
    fs->slot_state[slot] = SLOT_FREE;
    fs->q_head = (fs->q_head + 1) % AW_FILESTREAM_SLOTS;
    fs->q_count--;
    read_next(fs);
  }
  return n;
}

void aw_filestream_attach(aw_filestream *fs, CURL *easy) {
  fs->gen++;
  fs->read_off = 0;
  fs->sent = 0;
  fs->q_head = fs->q_count = 0;
  fs->paused = false;
  for (int i = 0; i < AW_FILESTREAM_SLOTS; i++)
    if (fs->slot_state[i] != SLOT_READING) fs->slot_state[i] = SLOT_FREE;
  fs->easy = easy;
  curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)fs->len);
  curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_read);
  curl_easy_setopt(easy, CURLOPT_READDATA, fs);
  read_next(fs);
}

void aw_filestream_detach(aw_filestream *fs) {
  fs->easy = NULL;
  fs->paused = false;
}

int aw_filestream_error(const aw_filestream *fs) { return fs->err; }

uint64_t aw_filestream_buffer_bytes(const aw_filestream *fs) { return fs->buffer_bytes; }

void aw_filestream_free(aw_filestream *fs) {
  if (!fs) return;
  fs->easy = NULL;
  if (fs->reading) {
    fs->freed = true; /* read_done frees it */
    return;
  }
  free_now(fs);
}
