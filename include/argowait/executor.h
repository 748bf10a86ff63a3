/* The wait executor: one loop, one state machine, one deadline. */
#ifndef ARGOWAIT_EXECUTOR_H
#define ARGOWAIT_EXECUTOR_H

#include <stdbool.h>

#include "argowait/config.h"

#define AW_EXIT_OK 0
#define AW_EXIT_FAILED 64

typedef struct {
  const char *kubeconfig; /* --kubeconfig; not supported yet */
} aw_wait_options;

/* Blocks (or unblocks) SIGTERM and SIGINT in the calling thread. */
void aw_stop_signals_block(bool block);

/* Runs `argowait wait` with the process environment; returns the exit code. */
int aw_wait_run(const aw_wait_options *opts, aw_getenv_fn getenv_fn);

#endif
