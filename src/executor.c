/* The wait executor: one loop, one state machine, one deadline.
 *
 *   STARTING --placeholder--> WAITING --all exitcode files--> COLLECTING
 *                               |  SIGTERM: start the deadline; keep         |
 *                               |  waiting until the reserve begins          v
 *                               +------------- reserve ------------->  REPORTING --> DONE
 *
 * Failure is data: whatever goes wrong appends a reason; the final report's
 * message and the termination log are both written from that list. The loop
 * owns all state; file work runs on the thread pool; HTTP runs on curl's
 * multi interface inside the same loop. */
#include "argowait/executor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#include "argowait/artifacts.h"
#include "argowait/collect.h"
#include "argowait/fsjob.h"
#include "argowait/http.h"
#include "argowait/kube.h"
#include "argowait/kubeconfig.h"
#include "argowait/log.h"
#include "argowait/safefile.h"
#include "argowait/taskresult.h"
#include "argowait/template.h"
#include "argowait/version.h"
#include "argowait/watch.h"

#define TERMINATION_LOG_MAX 4096
/* How long before SIGKILL the program exits at the latest: half the reserve,
 * within [150, 400] ms. The contract asks 100 ms; the rest absorbs a loaded
 * node. Half, so that the other half of the reserve is left for the report
 * (two round trips when a 409 or 404 turns a POST into a PATCH or back). */
#define HARD_STOP_MARGIN_MIN_MS 150u
#define RESERVE_LATE_WARN_MS 50u /* reserve timer this late: warn that the node starved us */
#define HARD_STOP_MARGIN_MAX_MS 400u
#define PROGRESS_TAIL_BYTES 4096u
#define MAX_REPORT_SWITCHES 6    /* POST<->PATCH flips on 409/404 */

typedef enum { ST_STARTING, ST_WAITING, ST_COLLECTING, ST_REPORTING, ST_DONE } exec_state;

static const char *const state_names[] = {"starting", "waiting", "collecting", "reporting", "done"};

typedef struct exec exec;

typedef struct {
  uv_work_t work;
  exec *ex;
  aw_collect_input input;
  aw_collect_output output;
  bool abandoned; /* the executor moved on without it */
} collect_job;

struct exec {
  uv_loop_t loop;
  aw_config cfg;
  aw_template tmpl;
  bool tmpl_loaded;
  char *ns;
  aw_tr_identity identity;
  exec_state state;

  aw_reasons failures; /* what could not be collected or reported */
  aw_reasons termlog;  /* notes and failures, in the order they arose */

  aw_budget budget;
  unsigned sigterms;
  aw_http *http;
  aw_kube *kube;
  aw_watch *watch;

  uv_signal_t sigterm_handle, sigint_handle;
  uv_timer_t reserve_timer, hard_stop_timer, deadline_timer, kill_timer;
  uv_timer_t progress_file_timer, progress_patch_timer, collect_timer;
  uv_timer_t drain_timer; /* armed by finish(): pool work gets a bounded time */
  bool drain_armed;
  bool handles_open;

  size_t main_count;
  bool *finished;
  size_t finished_count;

  aw_kube_op *placeholder_op;
  bool created;           /* the object exists (placeholder landed, or 409) */
  aw_kube_op *progress_op;
  bool progress_reading;
  char progress_latest[64];
  char progress_sent[64];
  bool deadline_fired;

  collect_job *collecting;
  aw_artifacts *artifacts; /* saving artifacts and logs (after collecting) */
  cJSON *outputs;         /* collected, owned */
  aw_kube_op *report_op;
  bool report_after_placeholder; /* the report waits for the placeholder */
  bool reserve_begun;
  unsigned report_switches;
  bool reported;          /* the label "true" landed */

  uint64_t t_start, t_all_finished, t_report_start;
  int exit_code;
};

static uint64_t hard_stop_margin(const exec *ex);

/* ---- reasons and the termination log ---------------------------------- */

static void add_failure(exec *ex, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_failure(exec *ex, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  aw_reasons_addv(&ex->failures, fmt, ap);
  va_end(ap);
  if (ex->failures.count) {
    const char *last = ex->failures.items[ex->failures.count - 1];
    aw_reasons_add(&ex->termlog, "%s", last);
    aw_warn("%s", last);
  }
}

static char *path_under_root(const exec *ex, const char *fixed, const char *rest) {
  return aw_config_path(&ex->cfg, fixed, rest);
}

/* Written at once for the deadline note, and again when the program ends,
 * each time with the whole list. */
static void write_termination_log_async(exec *ex) {
  char *text = aw_reasons_join(&ex->termlog, TERMINATION_LOG_MAX);
  char *path = path_under_root(ex, AW_PATH_TERMINATION_LOG, NULL);
  if (text && path) aw_fs_write_small(&ex->loop, path, text, strlen(text), 0644, NULL, NULL);
  free(text);
  free(path);
}

static void write_termination_log_now(const aw_config *cfg, const aw_reasons *termlog) {
  if (!termlog->count) return;
  char *text = aw_reasons_join(termlog, TERMINATION_LOG_MAX);
  char *path = aw_config_path(cfg, AW_PATH_TERMINATION_LOG, NULL);
  if (text && path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd >= 0) {
      ssize_t n = write(fd, text, strlen(text));
      (void)n;
      close(fd);
    } else {
      aw_warn("cannot write the termination log %s: %s", path, strerror(errno));
    }
  }
  free(text);
  free(path);
}

/* ---- ending ------------------------------------------------------------- */

static void close_handle(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Closing a signal handle makes libuv restore SIGTERM's default action.
 * The pool threads block SIGTERM (start_thread_pool) and finish() blocks it
 * here; a thread libcurl starts to resolve a host name may not, so the
 * signals are also ignored, process-wide, to keep an honest exit code. */
static void ignore_stop_signals(void) {
  struct sigaction ignore;
  memset(&ignore, 0, sizeof(ignore));
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGTERM, &ignore, NULL);
  sigaction(SIGINT, &ignore, NULL);
}

static void close_all_handles(exec *ex) {
  if (!ex->handles_open) return;
  ex->handles_open = false;
  close_handle((uv_handle_t *)&ex->sigterm_handle);
  close_handle((uv_handle_t *)&ex->sigint_handle);
  ignore_stop_signals();
  uv_handle_t *handles[] = {
      (uv_handle_t *)&ex->reserve_timer,      (uv_handle_t *)&ex->hard_stop_timer,
      (uv_handle_t *)&ex->deadline_timer,     (uv_handle_t *)&ex->kill_timer,
      (uv_handle_t *)&ex->progress_file_timer, (uv_handle_t *)&ex->progress_patch_timer,
      (uv_handle_t *)&ex->collect_timer,
  };
  for (size_t i = 0; i < sizeof(handles) / sizeof(handles[0]); i++) close_handle(handles[i]);
}

static void cancel_op(aw_kube_op **op) {
  if (*op) aw_kube_cancel(*op);
  *op = NULL;
}

/* Close to SIGKILL, teardown (closing handles, joining the thread pool,
 * freeing) is time the grace period may not have: end at once instead. */
#define FAST_EXIT_WINDOW_MS 1000u
#define DRAIN_MAX_MS 2000u /* before SIGTERM: pool work left after finish() */

/* Ends the process without teardown: no destructors either, since libuv's
 * would join a thread-pool thread that may be stuck. */
static void exit_now(exec *ex, const char *why) {
  write_termination_log_now(&ex->cfg, &ex->termlog);
  aw_info("exiting with code %d (%s)", ex->exit_code, why);
  fflush(NULL);
  _exit(ex->exit_code);
}

static void on_drain_timeout(uv_timer_t *t) {
  exit_now(t->data, "work on the thread pool did not end (a hung volume?)");
}

/* The exit code is decided, but a job still on the thread pool (a file read
 * or open on a hung volume, an archive the reserve abandoned) would keep
 * uv_run from returning, past the grace period and SIGKILL. It gets until
 * the hard stop (before SIGTERM: DRAIN_MAX_MS); the timer is unreferenced,
 * so it never keeps the loop alive itself. */
static void arm_drain_guard(exec *ex) {
  uint64_t wait = DRAIN_MAX_MS;
  if (ex->budget.active) wait = aw_budget_clip(&ex->budget, uv_now(&ex->loop), wait);
  if (uv_timer_init(&ex->loop, &ex->drain_timer) != 0) return;
  ex->drain_timer.data = ex;
  ex->drain_armed = true;
  uv_timer_start(&ex->drain_timer, on_drain_timeout, wait, 0);
  uv_unref((uv_handle_t *)&ex->drain_timer);
}

static void finish(exec *ex) {
  if (ex->state == ST_DONE) return;
  ex->state = ST_DONE;
  /* Closing the signal handles gives SIGTERM back its default action; a late
   * SIGTERM would then turn an honest 0 or 64 into death by signal. */
  aw_stop_signals_block(true);
  cancel_op(&ex->placeholder_op);
  cancel_op(&ex->progress_op);
  cancel_op(&ex->report_op);
  if (ex->watch) aw_watch_stop(ex->watch);
  ex->watch = NULL;
  ex->exit_code = ex->reported && ex->failures.count == 0 ? AW_EXIT_OK : AW_EXIT_FAILED;
  if (ex->budget.active &&
      aw_budget_clip(&ex->budget, uv_now(&ex->loop), UINT64_MAX) + hard_stop_margin(ex) < FAST_EXIT_WINDOW_MS)
    exit_now(ex, "the grace period is nearly over");
  /* Before the HTTP client closes: it stops the uploads it runs. */
  bool artifacts_stuck = aw_artifacts_busy(ex->artifacts);
  aw_artifacts_free(ex->artifacts);
  ex->artifacts = NULL;
  /* A read or an archive stuck on the thread pool (a hung volume) would keep
   * the loop from draining, and the grace period will not wait for it. */
  if (ex->collecting || artifacts_stuck) exit_now(ex, "collecting outputs is stuck");
  arm_drain_guard(ex);
  close_all_handles(ex);
  if (ex->http) aw_http_close(ex->http, NULL, NULL);
  ex->http = NULL;
}

/* ---- reporting ---------------------------------------------------------- */

static void send_report(exec *ex);

static char *failure_text(const exec *ex) {
  if (!ex->failures.count) return NULL;
  return aw_reasons_join(&ex->failures, AW_MESSAGE_MAX_BYTES);
}

static void on_report_done(const aw_kube_result *res, void *arg) {
  exec *ex = arg;
  ex->report_op = NULL;
  uint64_t took = uv_now(&ex->loop) - ex->t_report_start;
  switch (res->cls) {
    case AW_API_OK:
      ex->reported = true;
      ex->created = true;
      if (ex->failures.count)
        aw_info("failure marker reported in %llu ms (HTTP %ld)", (unsigned long long)took, res->status);
      else
        aw_info("outputs reported in %llu ms (HTTP %ld)", (unsigned long long)took, res->status);
      finish(ex);
      return;
    case AW_API_EXISTS:
    case AW_API_NOT_FOUND:
      if (++ex->report_switches <= MAX_REPORT_SWITCHES) {
        ex->created = res->cls == AW_API_EXISTS;
        aw_info("task result %s; %s it", ex->created ? "already exists" : "is gone",
                ex->created ? "patching" : "re-creating");
        send_report(ex);
        return;
      }
      break;
    default:
      break;
  }
  aw_reasons_add(&ex->termlog, "could not report the outputs to the Kubernetes API: %s",
                 res->message ? res->message : "no answer");
  aw_error("could not report the outputs: %s", res->message ? res->message : "no answer");
  finish(ex);
}

static void send_report(exec *ex) {
  char *failure = failure_text(ex);
  aw_tr_report rep = {.outputs = ex->outputs, .failure = failure};
  char *body = ex->created ? aw_tr_final_patch_body(&ex->identity, &rep)
                           : aw_tr_create_body(&ex->identity, &rep);
  free(failure);
  if (!body) {
    aw_reasons_add(&ex->termlog, "could not build the report body (out of memory)");
    finish(ex);
    return;
  }
  char suffix[512];
  snprintf(suffix, sizeof(suffix), "/%s", ex->identity.name);
  ex->report_op = ex->created
                      ? aw_kube_request(ex->kube, "PATCH", suffix, "application/merge-patch+json",
                                        body, true, on_report_done, ex)
                      : aw_kube_request(ex->kube, "POST", "", "application/json", body, true,
                                        on_report_done, ex);
  free(body);
}

/* Once the reserve has begun there is no time to wait for a placeholder
 * that has not landed: the report creates the whole result instead (a 409
 * then turns it into a patch). */
static void supersede_placeholder(exec *ex) {
  if (!ex->placeholder_op) return;
  aw_info("the placeholder has not landed; the report creates the whole task result");
  cancel_op(&ex->placeholder_op);
}

static void begin_report(exec *ex) {
  if (ex->state == ST_REPORTING || ex->state == ST_DONE) return;
  ex->state = ST_REPORTING;
  ex->t_report_start = uv_now(&ex->loop);
  uv_timer_stop(&ex->collect_timer);
  uv_timer_stop(&ex->progress_file_timer);
  uv_timer_stop(&ex->progress_patch_timer);
  cancel_op(&ex->progress_op);
  if (ex->placeholder_op && !ex->reserve_begun) {
    /* Placeholder first, then the report (contract §3): it goes out as soon
     * as the placeholder's retries end, one way or the other. */
    ex->report_after_placeholder = true;
    return;
  }
  supersede_placeholder(ex);
  send_report(ex);
}

/* ---- collecting ----------------------------------------------------------- */

/* ---- saving artifacts (after collecting, before reporting) ------------- */

/* The module's one callback: it may be freed from here (it touches nothing
 * after calling back). */
static void on_artifacts_done(cJSON *saved, aw_reasons *reasons, void *arg) {
  exec *ex = arg;
  if (ex->outputs) {
    cJSON_DeleteItemFromObjectCaseSensitive(ex->outputs, "artifacts");
    if (cJSON_GetArraySize(saved) > 0 && cJSON_AddItemToObject(ex->outputs, "artifacts", saved))
      saved = NULL;
  }
  cJSON_Delete(saved);
  for (size_t i = 0; i < reasons->count; i++) add_failure(ex, "%s", reasons->items[i]);
  aw_artifacts_free(ex->artifacts);
  ex->artifacts = NULL;
  begin_report(ex);
}

/* After collecting: save the artifacts and logs, then report. */
static void begin_artifacts(exec *ex) {
  if (ex->state != ST_COLLECTING || !aw_artifacts_needed(&ex->tmpl)) {
    begin_report(ex);
    return;
  }
  ex->artifacts = aw_artifacts_start(&ex->loop, ex->http, &ex->cfg, &ex->tmpl, &ex->budget,
                                     on_artifacts_done, ex);
  if (!ex->artifacts) {
    add_failure(ex, "cannot start saving the output artifacts (out of memory)");
    begin_report(ex);
    return;
  }
  if (ex->reserve_begun) aw_artifacts_reserve(ex->artifacts);
}

static void collect_work(uv_work_t *work) {
  collect_job *job = work->data;
  aw_collect_run(&job->input, &job->output);
}

static void collect_done(uv_work_t *work, int status) {
  collect_job *job = work->data;
  exec *ex = job->ex;
  if (job->abandoned || status != 0) {
    if (ex->collecting == job) ex->collecting = NULL;
    aw_collect_output_free(&job->output);
    free(job);
    return;
  }
  ex->collecting = NULL;
  ex->outputs = job->output.outputs;
  job->output.outputs = NULL;
  aw_info("outputs collected: %u parameters read, %u from defaults, %zu problems",
          job->output.params_reported, job->output.params_defaulted, job->output.reasons.count);
  for (size_t i = 0; i < job->output.reasons.count; i++) {
    aw_warn("%s", job->output.reasons.items[i]);
    aw_reasons_add(&ex->termlog, "%s", job->output.reasons.items[i]);
  }
  aw_reasons_move(&ex->failures, &job->output.reasons);
  aw_collect_output_free(&job->output);
  free(job);
  begin_artifacts(ex);
}

static void on_collect_timeout(uv_timer_t *t) {
  exec *ex = t->data;
  if (ex->state != ST_COLLECTING || !ex->collecting) return;
  ex->collecting->abandoned = true;
  add_failure(ex, "collecting the outputs did not finish before the grace period ran out");
  /* The job still runs on the pool; finish() knows it must not wait. */
  begin_report(ex);
}

static void begin_collect(exec *ex) {
  if (ex->state != ST_WAITING && ex->state != ST_STARTING) return;
  ex->state = ST_COLLECTING;
  if (ex->watch) aw_watch_stop(ex->watch);
  ex->watch = NULL;
  collect_job *job = calloc(1, sizeof(*job));
  if (!job) {
    add_failure(ex, "out of memory while collecting outputs");
    begin_report(ex);
    return;
  }
  job->ex = ex;
  job->work.data = job;
  job->input.cfg = &ex->cfg;
  job->input.tmpl = &ex->tmpl;
  job->input.include_result = ex->cfg.include_script_output && ex->tmpl.has_result_container;
  if (uv_queue_work(&ex->loop, &job->work, collect_work, collect_done) != 0) {
    free(job);
    add_failure(ex, "cannot start collecting outputs");
    begin_report(ex);
    return;
  }
  ex->collecting = job;
  if (ex->budget.active) {
    uint64_t now = uv_now(&ex->loop);
    /* Leave half of what is left for the report itself. */
    uint64_t left = aw_budget_clip(&ex->budget, now, UINT64_MAX);
    uv_timer_start(&ex->collect_timer, on_collect_timeout, left / 2, 0);
  }
}

/* The collect timer must also exist when collecting started before SIGTERM. */
static void arm_collect_timeout(exec *ex) {
  if (ex->state != ST_COLLECTING || uv_is_active((uv_handle_t *)&ex->collect_timer)) return;
  uint64_t left = aw_budget_clip(&ex->budget, uv_now(&ex->loop), UINT64_MAX);
  uv_timer_start(&ex->collect_timer, on_collect_timeout, left / 2, 0);
}

/* ---- waiting for main ----------------------------------------------------- */

static void on_container_finished(size_t index, int exit_code, const char *error, void *arg) {
  exec *ex = arg;
  if (ex->state != ST_WAITING && ex->state != ST_STARTING) return;
  if (ex->finished[index]) return;
  ex->finished[index] = true;
  ex->finished_count++;
  const char *name = ex->tmpl.main_containers[index];
  if (error) add_failure(ex, "container %s: %s", name, error);
  else aw_info("container %s finished with exit code %d", name, exit_code);
  if (ex->finished_count == ex->main_count) {
    ex->t_all_finished = uv_now(&ex->loop);
    aw_info("all main containers finished after %llu ms",
            (unsigned long long)(ex->t_all_finished - ex->t_start));
    begin_collect(ex);
  }
}

/* ---- the deadline (ARGO_DEADLINE) ---------------------------------------- */

static void signal_main_containers(exec *ex, const char *signo) {
  for (size_t i = 0; i < ex->main_count; i++) {
    if (ex->finished[i]) continue;
    char *dir = path_under_root(ex, AW_PATH_CTR_DIR, ex->tmpl.main_containers[i]);
    char *file = NULL;
    if (dir && asprintf(&file, "%s/signal", dir) >= 0) {
      mkdir(dir, 0777);
      aw_fs_write_small(&ex->loop, file, signo, strlen(signo), 0666, NULL, NULL);
      aw_info("asked container %s to stop with signal %s", ex->tmpl.main_containers[i], signo);
    }
    free(file);
    free(dir);
  }
}

static void on_kill_timer(uv_timer_t *t) {
  exec *ex = t->data;
  if (ex->state == ST_WAITING) signal_main_containers(ex, "9");
}

static void on_deadline(uv_timer_t *t) {
  exec *ex = t->data;
  if (ex->state != ST_WAITING && ex->state != ST_STARTING) return;
  ex->deadline_fired = true;
  aw_warn("Step exceeded its deadline");
  aw_reasons_add(&ex->termlog, "Step exceeded its deadline");
  write_termination_log_async(ex);
  signal_main_containers(ex, "15");
  uv_timer_start(&ex->kill_timer, on_kill_timer, (uint64_t)ex->cfg.grace_ms, 0);
}

static void arm_deadline(exec *ex) {
  if (!ex->cfg.has_deadline) return;
  int64_t delay = ex->cfg.deadline_unix_ms - aw_unix_now_ms();
  uv_timer_start(&ex->deadline_timer, on_deadline, delay > 0 ? (uint64_t)delay : 0, 0);
}

/* ---- progress -------------------------------------------------------------- */

static void on_progress_read(int err, aw_bytes *data, void *arg) {
  exec *ex = arg;
  ex->progress_reading = false;
  if (err || ex->state == ST_DONE) return;
  char value[sizeof(ex->progress_latest)];
  if (aw_progress_last(data->data, data->len, value, sizeof(value)) == 0)
    memcpy(ex->progress_latest, value, sizeof(value));
}

static void on_progress_file_tick(uv_timer_t *t) {
  exec *ex = t->data;
  if (ex->progress_reading) return;
  char *slash = strrchr(ex->cfg.progress_file, '/');
  if (!slash || slash == ex->cfg.progress_file) return;
  char *dir = strndup(ex->cfg.progress_file, (size_t)(slash - ex->cfg.progress_file));
  if (dir && aw_fs_read_tail(&ex->loop, dir, slash + 1, PROGRESS_TAIL_BYTES, on_progress_read, ex) == 0)
    ex->progress_reading = true;
  free(dir);
}

static void on_progress_patched(const aw_kube_result *res, void *arg) {
  exec *ex = arg;
  ex->progress_op = NULL;
  if (res->cls != AW_API_OK)
    aw_warn("progress not reported: %s", res->message ? res->message : "no answer");
}

static void on_progress_patch_tick(uv_timer_t *t) {
  exec *ex = t->data;
  if (!ex->created || ex->progress_op || !ex->progress_latest[0]) return;
  if (strcmp(ex->progress_latest, ex->progress_sent) == 0) return;
  char *body = aw_tr_progress_body(ex->progress_latest);
  if (!body) return;
  char suffix[512];
  snprintf(suffix, sizeof(suffix), "/%s", ex->identity.name);
  memcpy(ex->progress_sent, ex->progress_latest, sizeof(ex->progress_sent));
  ex->progress_op = aw_kube_request(ex->kube, "PATCH", suffix, "application/merge-patch+json", body,
                                    false, on_progress_patched, ex);
  free(body);
}

static void start_progress(exec *ex) {
  if (!aw_config_progress_enabled(&ex->cfg) || !ex->cfg.progress_file) return;
  uint64_t file_tick = (uint64_t)ex->cfg.progress_file_tick_ms;
  uint64_t patch_tick = (uint64_t)ex->cfg.progress_patch_tick_ms;
  uv_timer_start(&ex->progress_file_timer, on_progress_file_tick, file_tick, file_tick);
  uv_timer_start(&ex->progress_patch_timer, on_progress_patch_tick, patch_tick, patch_tick);
}

/* ---- SIGTERM and the reserve ----------------------------------------------- */

static void on_hard_stop(uv_timer_t *t) {
  exec *ex = t->data;
  if (ex->state == ST_DONE) return;
  aw_reasons_add(&ex->termlog, "the grace period ran out before the report was accepted (state %s)",
                 state_names[ex->state]);
  aw_error("the grace period is over; exiting before SIGKILL");
  finish(ex);
}

static void on_reserve(uv_timer_t *t) {
  exec *ex = t->data;
  aw_info("the reserve begins: reporting what there is (state %s)", state_names[ex->state]);
  /* A timer this late means the node gave this process no CPU: say so, since
   * the report may then not fit in what is left before the hard stop. */
  uv_update_time(&ex->loop);
  uint64_t now = uv_now(&ex->loop);
  if (now > ex->budget.reserve_at + RESERVE_LATE_WARN_MS)
    aw_warn("the reserve began %llu ms late (this process was not scheduled: an overloaded node?); "
            "%lld ms are left before the hard stop",
            (unsigned long long)(now - ex->budget.reserve_at),
            (long long)ex->budget.hard_stop - (long long)now);
  ex->reserve_begun = true;
  cancel_op(&ex->progress_op);
  uv_timer_stop(&ex->progress_file_timer);
  uv_timer_stop(&ex->progress_patch_timer);
  uv_timer_stop(&ex->kill_timer);
  switch (ex->state) {
    case ST_STARTING:
    case ST_WAITING:
      for (size_t i = 0; i < ex->main_count; i++)
        if (!ex->finished[i])
          add_failure(ex, "container %s had not finished when the grace period's reserve began",
                      ex->tmpl.main_containers[i]);
      begin_collect(ex);
      break;
    case ST_COLLECTING:
      arm_collect_timeout(ex);
      if (ex->artifacts) aw_artifacts_reserve(ex->artifacts);
      break;
    case ST_REPORTING:
      if (ex->report_after_placeholder) {
        ex->report_after_placeholder = false;
        supersede_placeholder(ex);
        send_report(ex);
      }
      aw_kube_budget_changed(ex->kube, true);
      break;
    case ST_DONE:
      break;
  }
}

static uint64_t hard_stop_margin(const exec *ex) {
  uint64_t half = (uint64_t)ex->cfg.reserve_ms / 2;
  if (half < HARD_STOP_MARGIN_MIN_MS) return HARD_STOP_MARGIN_MIN_MS;
  return half > HARD_STOP_MARGIN_MAX_MS ? HARD_STOP_MARGIN_MAX_MS : half;
}

static void on_signal(uv_signal_t *handle, int signum) {
  exec *ex = handle->data;
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (ex->state == ST_DONE) return;
  if (ex->sigterms++) {
    aw_info("received %s again; the deadline stays as it is", name);
    return;
  }
  uint64_t now = uv_now(&ex->loop);
  aw_budget_start(&ex->budget, now, (uint64_t)ex->cfg.grace_ms, (uint64_t)ex->cfg.reserve_ms,
                  hard_stop_margin(ex));
  aw_info("received %s: waiting for main until the reserve begins in %llu ms; exiting within %llu ms",
          name, (unsigned long long)(ex->budget.reserve_at - now),
          (unsigned long long)(ex->budget.hard_stop - now));
  uv_timer_start(&ex->reserve_timer, on_reserve, ex->budget.reserve_at - now, 0);
  uv_timer_start(&ex->hard_stop_timer, on_hard_stop, ex->budget.hard_stop - now, 0);
  aw_kube_budget_changed(ex->kube, false);
  if (ex->artifacts) aw_artifacts_budget_changed(ex->artifacts);
  if (ex->state == ST_COLLECTING) arm_collect_timeout(ex);
}

/* ---- start -------------------------------------------------------------------- */

static void on_placeholder_done(const aw_kube_result *res, void *arg) {
  exec *ex = arg;
  ex->placeholder_op = NULL;
  uint64_t took = uv_now(&ex->loop) - ex->t_start;
  if (res->cls == AW_API_OK || res->cls == AW_API_EXISTS) {
    ex->created = true;
    aw_info("placeholder %s (HTTP %ld) %llu ms after start",
            res->cls == AW_API_OK ? "written" : "already there", res->status,
            (unsigned long long)took);
  } else {
    /* Not a failure by itself: the final report creates the whole object.
     * But a permanent answer (TLS verification, RBAC) is what an operator
     * needs to read if the report cannot land either. */
    aw_warn("placeholder not written: %s", res->message ? res->message : "no answer");
    if (res->cls == AW_API_PERMANENT)
      aw_reasons_add(&ex->termlog, "could not write the placeholder task result: %s",
                     res->message ? res->message : "no answer");
  }
  if (ex->report_after_placeholder && ex->state == ST_REPORTING) {
    ex->report_after_placeholder = false;
    send_report(ex);
  }
}

static void init_handles(exec *ex) {
  uv_timer_t *timers[] = {&ex->reserve_timer, &ex->hard_stop_timer, &ex->deadline_timer,
                          &ex->kill_timer, &ex->progress_file_timer, &ex->progress_patch_timer,
                          &ex->collect_timer};
  for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
    uv_timer_init(&ex->loop, timers[i]);
    timers[i]->data = ex;
  }
  uv_signal_init(&ex->loop, &ex->sigterm_handle);
  uv_signal_init(&ex->loop, &ex->sigint_handle);
  ex->sigterm_handle.data = ex;
  ex->sigint_handle.data = ex;
  uv_signal_start(&ex->sigterm_handle, on_signal, SIGTERM);
  uv_signal_start(&ex->sigint_handle, on_signal, SIGINT);
  ex->handles_open = true;
}

static int load_template(exec *ex) {
  if (ex->cfg.template_json)
    return aw_template_parse(ex->cfg.template_json, strlen(ex->cfg.template_json), &ex->tmpl,
                             &ex->failures);
  const char *path = ex->cfg.template_path;
  char *offloaded = path_under_root(ex, AW_PATH_OFFLOADED_TEMPLATE, NULL);
  aw_bytes raw = {0};
  int rc;
  if (offloaded && strcmp(path, offloaded) == 0) {
    /* A ConfigMap mount: symlinks into ..data by design, out of main's reach. */
    rc = aw_read_trusted(path, AW_TEMPLATE_MAX_BYTES, &raw);
  } else {
    /* /var/run/argo is shared with the main container: read beneath it. */
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? NULL : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    rc = dir ? aw_read_beneath(dir, slash + 1, AW_TEMPLATE_MAX_BYTES, &raw) : -EINVAL;
    free(dir);
  }
  free(offloaded);
  if (rc != 0) {
    aw_reasons_add(&ex->failures, "template: cannot read %s: %s", path, aw_safefile_strerror(rc));
    return -1;
  }
  rc = aw_template_parse(raw.data, raw.len, &ex->tmpl, &ex->failures);
  aw_bytes_free(&raw);
  return rc;
}

/* The namespace: POD_NAMESPACE, else the kubeconfig context's, else the
 * service account's namespace file (as client-go does in a pod). */
static char *read_namespace(const exec *ex, const aw_kubeconfig *kc) {
  if (ex->cfg.namespace_env) return strdup(ex->cfg.namespace_env);
  if (kc && kc->namespace_) return strdup(kc->namespace_);
  char *path = path_under_root(ex, AW_PATH_SA_DIR, "namespace");
  aw_bytes raw = {0};
  int rc = path ? aw_read_trusted(path, 256, &raw) : -ENOMEM;
  free(path);
  if (rc != 0) return NULL;
  size_t n = raw.len;
  while (n && (raw.data[n - 1] == '\n' || raw.data[n - 1] == ' ' || raw.data[n - 1] == '\r')) n--;
  raw.data[n] = '\0';
  if (!n) {
    aw_bytes_free(&raw);
    return NULL;
  }
  return raw.data;
}

static char *user_agent(void) {
  char *ua = NULL;
  if (asprintf(&ua, "argowait/%s (argo-executor wait)", ARGOWAIT_VERSION) < 0) ua = NULL;
  return ua;
}

static int new_kube(exec *ex, const aw_kube_config *kc) {
  char *err = NULL;
  ex->kube = aw_kube_new(&ex->loop, ex->http, kc, &err);
  if (!ex->kube) aw_reasons_add(&ex->termlog, "%s", err ? err : "cannot set up the API client");
  free(err);
  return ex->kube ? 0 : -1;
}

/* In the pod: KUBERNETES_SERVICE_HOST/PORT and the service account's files. */
static int start_kube_in_cluster(exec *ex) {
  char *ca = path_under_root(ex, AW_PATH_SA_DIR, "ca.crt");
  char *token = path_under_root(ex, AW_PATH_SA_DIR, "token");
  char *url = NULL, *ua = user_agent();
  bool v6 = strchr(ex->cfg.api_host, ':') != NULL;
  if (asprintf(&url, v6 ? "https://[%s]:%s" : "https://%s:%s", ex->cfg.api_host, ex->cfg.api_port) < 0)
    url = NULL;
  int rc = -1;
  if (ca && token && url && ua) {
    aw_kube_config kc = {.base_url = url, .namespace_ = ex->ns, .user_agent = ua,
                         .budget = &ex->budget, .ca_file = ca, .token_file = token};
    rc = new_kube(ex, &kc);
  }
  free(ca);
  free(token);
  free(url);
  free(ua);
  return rc;
}

/* --kubeconfig: the current context's server and credentials. */
static int start_kube_from_kubeconfig(exec *ex, const aw_kubeconfig *c) {
  char *ua = user_agent();
  if (!ua) return -1;
  aw_kube_config kc = {
      .base_url = c->server, .namespace_ = ex->ns, .user_agent = ua, .budget = &ex->budget,
      .ca_file = c->ca_file, .ca_pem = c->ca_pem.data, .ca_pem_len = c->ca_pem.len,
      .token_file = c->token_file, .token = c->token,
      .client_cert_file = c->client_cert_file, .client_key_file = c->client_key_file,
      .client_cert_pem = c->client_cert_pem.data, .client_cert_pem_len = c->client_cert_pem.len,
      .client_key_pem = c->client_key_pem.data, .client_key_pem_len = c->client_key_pem.len,
  };
  int rc = new_kube(ex, &kc);
  free(ua);
  return rc;
}

static int load_kubeconfig(exec *ex, const char *path, aw_kubeconfig *kc) {
  aw_bytes raw = {0};
  int rc = aw_read_trusted(path, AW_KUBECONFIG_MAX_BYTES, &raw);
  if (rc != 0) {
    aw_reasons_add(&ex->failures, "kubeconfig: cannot read %s: %s", path, aw_safefile_strerror(rc));
    return -1;
  }
  const char *slash = strrchr(path, '/');
  char *dir = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
  rc = aw_kubeconfig_parse(raw.data, raw.len, dir, kc, &ex->failures);
  free(dir);
  aw_bytes_free(&raw);
  return rc;
}

static void log_start(const exec *ex) {
  aw_strbuf names;
  aw_strbuf_init(&names);
  for (size_t i = 0; i < ex->main_count; i++)
    aw_strbuf_appendf(&names, "%s%s", i ? "," : "", ex->tmpl.main_containers[i]);
  aw_info("argowait %s: pod %s, task result %s/%s, main containers [%s], grace %lld ms, reserve %lld ms",
          ARGOWAIT_VERSION, ex->cfg.pod_name ? ex->cfg.pod_name : "?", ex->ns, ex->identity.name,
          names.data ? names.data : "", (long long)ex->cfg.grace_ms, (long long)ex->cfg.reserve_ms);
  aw_strbuf_free(&names);
}

static void start_waiting(exec *ex) {
  ex->main_count = ex->tmpl.main_container_count;
  ex->finished = calloc(ex->main_count ? ex->main_count : 1, sizeof(bool));
  log_start(ex);
  char *body = aw_tr_placeholder_body(&ex->identity);
  if (body)
    ex->placeholder_op = aw_kube_request(ex->kube, "POST", "", "application/json", body, true,
                                         on_placeholder_done, ex);
  free(body);
  ex->state = ST_WAITING;
  char *argo_dir = path_under_root(ex, AW_PATH_ARGO_DIR, NULL);
  char *err = NULL;
  ex->watch = argo_dir && ex->finished
                  ? aw_watch_start(&ex->loop, argo_dir, ex->tmpl.main_containers, ex->main_count,
                                   on_container_finished, ex, &err)
                  : NULL;
  free(argo_dir);
  if (!ex->watch) {
    add_failure(ex, "cannot watch the main containers: %s", err ? err : "out of memory");
    free(err);
    begin_collect(ex);
    return;
  }
  arm_deadline(ex);
  start_progress(ex);
}

/* Configuration that cannot even name the task result ends here, with the
 * reasons in the termination log only. */
static int fail_without_api(exec *ex) {
  aw_reasons_move(&ex->termlog, &ex->failures);
  for (size_t i = 0; i < ex->termlog.count; i++) aw_error("%s", ex->termlog.items[i]);
  write_termination_log_now(&ex->cfg, &ex->termlog);
  return AW_EXIT_FAILED;
}

static void free_exec(exec *ex) {
  aw_kube_free(ex->kube);
  cJSON_Delete(ex->outputs);
  if (ex->tmpl_loaded) aw_template_free(&ex->tmpl);
  aw_config_free(&ex->cfg);
  aw_reasons_free(&ex->failures);
  aw_reasons_free(&ex->termlog);
  free(ex->finished);
  free(ex->ns);
}

static int run_loop(exec *ex) {
  uv_run(&ex->loop, UV_RUN_DEFAULT);
  if (ex->drain_armed) {
    uv_close((uv_handle_t *)&ex->drain_timer, NULL);
    uv_run(&ex->loop, UV_RUN_DEFAULT);
  }
  int code = ex->exit_code;
  write_termination_log_now(&ex->cfg, &ex->termlog);
  aw_kube_stats ks = ex->kube ? aw_kube_get_stats(ex->kube) : (aw_kube_stats){0};
  aw_info("exiting with code %d (%u API attempts: %u POST, %u PATCH)", code, ks.attempts, ks.posts,
          ks.patches);
  free_exec(ex);
  /* Closing the loop only fails if a handle leaked; say so, it is a bug. */
  if (uv_loop_close(&ex->loop) != 0) aw_warn("event loop closed with handles still open");
  return code;
}

/* Where the API server is: --kubeconfig, or the in-cluster configuration;
 * and the namespace. False (with a reason) when it cannot be known. */
static bool find_api(exec *ex, const char *kubeconfig, aw_kubeconfig *kc) {
  if (kubeconfig) {
    if (load_kubeconfig(ex, kubeconfig, kc) != 0) return false;
  } else if (!ex->cfg.api_host || !ex->cfg.api_port) {
    aw_reasons_add(&ex->failures, "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT: required "
                                  "(in-cluster configuration), but not set");
    return false;
  }
  ex->ns = read_namespace(ex, kubeconfig ? kc : NULL);
  if (!ex->ns)
    aw_reasons_add(&ex->failures, "namespace: POD_NAMESPACE is unset and %s%s/namespace cannot be read",
                   ex->cfg.root, AW_PATH_SA_DIR);
  return ex->ns != NULL;
}

void aw_stop_signals_block(bool block) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

static void no_work(uv_work_t *req) { (void)req; }
static void no_work_done(uv_work_t *req, int status) {
  (void)status;
  free(req);
}

/* libuv starts its thread-pool threads on the first queued work, and they
 * inherit this thread's signal mask. Started while SIGTERM is blocked, they
 * never take it: it reaches only the loop's thread, whose handler (or, once
 * finishing, whose mask) decides, so no thread can die of it. */
static void start_thread_pool(uv_loop_t *loop) {
  uv_work_t *req = calloc(1, sizeof(*req));
  if (req && uv_queue_work(loop, req, no_work, no_work_done) != 0) free(req);
}

/* The loop, its handles and the API client. Returns -1 when no request can
 * be made (the reasons are in the termination log then). */
static int start_loop(exec *ex, const char *kubeconfig, const aw_kubeconfig *kc) {
  uv_loop_init(&ex->loop);
  ex->t_start = uv_now(&ex->loop);
  init_handles(ex);
  start_thread_pool(&ex->loop);
  aw_stop_signals_block(false);
  ex->http = aw_http_new(&ex->loop);
  if (!ex->http) return -1;
  return kubeconfig ? start_kube_from_kubeconfig(ex, kc) : start_kube_in_cluster(ex);
}

int aw_wait_run(const aw_wait_options *opts, aw_getenv_fn getenv_fn) {
  static exec ex_storage;
  exec *ex = &ex_storage;
  /* Until the loop's handlers exist, SIGTERM must not kill the process: it
   * stays pending and is delivered once they are installed. */
  aw_stop_signals_block(true);
  memset(ex, 0, sizeof(*ex));
  aw_reasons_init(&ex->failures);
  aw_reasons_init(&ex->termlog);
  aw_config_load(&ex->cfg, getenv_fn, &ex->failures);
  const char *kubeconfig = opts ? opts->kubeconfig : NULL;
  aw_kubeconfig kc = {0};
  if (!find_api(ex, kubeconfig, &kc) || !aw_config_has_identity(&ex->cfg)) {
    aw_kubeconfig_free(&kc);
    int code = fail_without_api(ex);
    free_exec(ex);
    return code;
  }
  if (load_template(ex) == 0) ex->tmpl_loaded = true;
  ex->identity = (aw_tr_identity){.namespace_ = ex->ns, .name = ex->cfg.node_id,
                                  .workflow_name = ex->cfg.workflow_name,
                                  .workflow_uid = ex->cfg.workflow_uid,
                                  .instance_id = ex->cfg.instance_id};
  int rc = start_loop(ex, kubeconfig, &kc);
  aw_kubeconfig_free(&kc);
  if (rc != 0) {
    aw_reasons_move(&ex->termlog, &ex->failures);
    ex->state = ST_REPORTING; /* nothing can be reported */
    finish(ex);
  } else if (ex->failures.count) {
    /* Bad configuration or template: report the marker at once. */
    for (size_t i = 0; i < ex->failures.count; i++) {
      aw_error("%s", ex->failures.items[i]);
      aw_reasons_add(&ex->termlog, "%s", ex->failures.items[i]);
    }
    begin_report(ex);
  } else {
    start_waiting(ex);
  }
  return run_loop(ex);
}
