/* Watching the main containers' exitcode files.
 *
 * Each ctr/<name> folder is created (mode 0777, as Argo's executor does) and
 * watched with inotify (uv_fs_event); where inotify cannot be had, the
 * exitcode file is polled (uv_fs_poll). Every change re-reads the file on
 * the thread pool: empty means "not yet written", a number means done. */
#ifndef ARGOWAIT_WATCH_H
#define ARGOWAIT_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define AW_WATCH_POLL_MS 500

typedef struct aw_watch aw_watch;

/* A container finished: exit_code is its code, or error (one line) says why
 * the file is malformed. Called at most once per container. */
typedef void (*aw_watch_cb)(size_t index, int exit_code, const char *error,
                            void *arg);

/* argo_dir is $ROOT/var/run/argo (the shared emptyDir's mount point): the
 * files are read beneath it. Returns NULL and sets *err. */
aw_watch *aw_watch_start(uv_loop_t *loop, const char *argo_dir,
                         char *const *names, size_t count, aw_watch_cb cb,
                         void *arg, char **err);
/* True when at least one container fell back to polling. */
bool aw_watch_polling(const aw_watch *w);
/* Stops watching and frees the watcher once its handles are closed. */
void aw_watch_stop(aw_watch *w);

/* Parses an exitcode file's contents: -1 for empty (not yet written), 0 and
 * *code for a number (whitespace around it tolerated), 1 for malformed. */
int aw_exitcode_parse(const char *data, size_t len, int *code);

#endif
