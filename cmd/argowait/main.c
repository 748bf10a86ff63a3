/* argowait's command line: wait, kill, version. Nothing else lives here. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#include "argowait/executor.h"
#include "argowait/log.h"
#include "argowait/version.h"

static const char *env_lookup(const char *name) { return getenv(name); }

/* Takes the value of "--name value" or "--name=value"; advances *i. */
static const char *flag_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *arg = argv[*i];
  if (strncmp(arg, name, n) != 0) return NULL;
  if (arg[n] == '=') return arg + n + 1;
  if (arg[n] != '\0') return NULL;
  if (*i + 1 < argc) return argv[++*i];
  return "";
}

typedef struct {
  const char *loglevel;
  const char *log_format;
  const char *kubeconfig;
} wait_flags;

static void parse_wait_flags(int argc, char **argv, wait_flags *f, char ***unknown, int *unknown_count) {
  for (int i = 2; i < argc; i++) {
    const char *v;
    if ((v = flag_value(argc, argv, &i, "--loglevel"))) f->loglevel = v;
    else if ((v = flag_value(argc, argv, &i, "--log-format"))) f->log_format = v;
    else if ((v = flag_value(argc, argv, &i, "--kubeconfig"))) f->kubeconfig = v;
    else if (flag_value(argc, argv, &i, "--gloglevel")) continue; /* client-go's; nothing to do */
    else (*unknown)[(*unknown_count)++] = argv[i];
  }
}

/* Runs right after the dynamic loader, before main(): from here on SIGTERM
 * and SIGINT stay pending until the wait loop's handlers take them (as a
 * pod's PID 1 they would otherwise be dropped, and the grace period's
 * deadline would never start). The other commands unblock them again. */
__attribute__((constructor)) static void hold_stop_signals(void) { aw_stop_signals_block(true); }

static int cmd_wait(int argc, char **argv) {
  wait_flags f = {0};
  char **unknown = calloc((size_t)argc, sizeof(char *));
  int unknown_count = 0;
  if (!unknown) return AW_EXIT_FAILED;
  parse_wait_flags(argc, argv, &f, &unknown, &unknown_count);
  aw_log_level level = AW_LOG_INFO;
  aw_log_format format = AW_LOG_TEXT;
  bool bad_format = f.log_format && aw_log_parse_format(f.log_format, &format) != 0;
  bool bad_level = f.loglevel && aw_log_parse_level(f.loglevel, &level) != 0;
  aw_log_setup(level, format);
  if (bad_format) aw_warn("unknown --log-format \"%s\"; using text", f.log_format);
  if (bad_level) aw_warn("unknown --loglevel \"%s\"; using info", f.loglevel);
  /* The controller appends executor.args: never fail on a flag we lack. */
  for (int i = 0; i < unknown_count; i++) aw_warn("ignoring unknown argument \"%s\"", unknown[i]);
  free(unknown);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    aw_error("cannot initialise libcurl");
    return AW_EXIT_FAILED;
  }
  aw_wait_options opts = {.kubeconfig = f.kubeconfig};
  int code = aw_wait_run(&opts, env_lookup);
  curl_global_cleanup();
  return code;
}

static int parse_number(const char *s, long min, long max, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || !end || end == s || *end || v < min || v > max) return -1;
  *out = v;
  return 0;
}

/* The controller execs `argoexec kill 15 1` (then `kill 9 1`) in the wait
 * container: PID 1 is this program, which handles SIGTERM on its loop. */
static int cmd_kill(int argc, char **argv) {
  long signo, pid;
  if (argc != 4 || parse_number(argv[2], 0, 64, &signo) != 0 ||
      parse_number(argv[3], 1, 4194304, &pid) != 0) {
    fprintf(stderr, "usage: argowait kill SIGNO PID\n");
    return 1;
  }
  if (kill((pid_t)pid, (int)signo) != 0) {
    aw_error("cannot send signal %ld to %ld: %s", signo, pid, strerror(errno));
    return 1;
  }
  return 0;
}

static int cmd_version(void) {
  curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
  printf("argowait %s\n", ARGOWAIT_VERSION);
  printf("libuv %s\n", uv_version_string());
  printf("libcurl %s (%s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS");
  printf("cJSON %s\n", cJSON_Version());
  return 0;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: argowait wait [--loglevel L] [--log-format text|json] [--kubeconfig PATH]\n"
          "       argowait kill SIGNO PID\n"
          "       argowait version\n");
}

int main(int argc, char **argv) {
  /* Invoked as argoexec (the name Argo's controller hard-codes) or as
   * argowait, the first argument picks the command either way. */
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "wait") == 0) return cmd_wait(argc, argv);
  aw_stop_signals_block(false);
  if (strcmp(cmd, "kill") == 0) return cmd_kill(argc, argv);
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) return cmd_version();
  if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
    usage(stdout);
    return 0;
  }
  aw_error("unknown command \"%s\": argowait implements wait, kill and version (init and "
           "emissary stay with Argo's argoexec)", cmd);
  return 2;
}
