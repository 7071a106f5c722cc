/*
 * bach-keeper: PID 1 of every Bach container. It starts the task's program once per attempt and
 * makes sure that, when it reports the attempt's end, no process of that attempt is left. It never
 * touches a path outside the container (it cannot: it runs as the program's own unprivileged user).
 *
 * Built static (scripts/build-keeper), so it runs in any image, even one holding only the program:
 * the worker mounts it read-only at /.bach-keeper and makes it the container's command:
 *
 *   /.bach-keeper PROGRAM [ARGS...]
 *
 * On its stdin (attached from the worker) first a line with TOKEN, the random word that marks its
 * reports (given there, not in argv, and the keeper made non-dumpable, so a program cannot read it
 * from /proc/1 and forge an attempt's end), then one line per attempt: "ID HEX..." where each HEX is
 * the hex of one NAME=VALUE the attempt adds to the environment (hex, so no value can break the line).
 * For each, a child opens /bach/in as stdin (a named pipe the worker feeds) and /bach/out as stdout
 * (a file the worker copies once the keeper has reported; /bach is read-only in here and /bach/out
 * is bound over its entry, so neither can be replaced), sets the variables, goes to /task, execs the
 * program. When the program exits, every other process in the container is killed and reaped (as
 * PID 1 of the container's PID namespace, kill(-1) reaches them all), /scratch is emptied without
 * following links, and then, on stderr after whatever the program wrote there:
 *
 *   \x1eTOKEN ID STATUS STEP ERRNO SCRATCH_ERRNO\n
 *
 * STATUS is the exit code, or 128+N for signal N; STEP is "-" or the step that failed before the
 * program ran (env, stdin, stdout, chdir, exec) with its errno; SCRATCH_ERRNO is 0 or why /scratch
 * could not be emptied (then the worker throws the container away).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bounds what a program can make the keeper hold open: a deeper tree is left and reported. */
#define MAX_DEPTH 64

struct failure {
  int step;
  int err;
};

static const char *const STEPS[] = {"-", "env", "stdin", "stdout", "chdir", "exec"};
enum { STEP_NONE, STEP_ENV, STEP_STDIN, STEP_STDOUT, STEP_CHDIR, STEP_EXEC };

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Decodes one hex word in place; 0 when it is well formed and holds NAME=VALUE without a NUL. */
static int unhex(char *word) {
  size_t n = strlen(word);
  if (n % 2 != 0) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int hi = hexval(word[2 * i]), lo = hexval(word[2 * i + 1]);
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return -1;
    word[i] = (char)(hi * 16 + lo);
  }
  word[n / 2] = '\0';
  char *eq = strchr(word, '=');
  return eq == NULL || eq == word ? -1 : 0;
}

/* In the child: never returns. Failures before the exec go to the parent through `report`. */
static void start_program(char *vars, char **argv, int report) {
  struct failure f = {STEP_NONE, 0};
  for (char *save = NULL, *w = strtok_r(vars, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
    if (unhex(w) != 0 || putenv(w) != 0) {
      f = (struct failure){STEP_ENV, EINVAL};
      goto failed;
    }
  }
  int in = open("/bach/in", O_RDONLY);
  if (in < 0) {
    f = (struct failure){STEP_STDIN, errno};
    goto failed;
  }
  int out = open("/bach/out", O_WRONLY | O_TRUNC);
  if (out < 0) {
    f = (struct failure){STEP_STDOUT, errno};
    goto failed;
  }
  if (dup2(in, 0) < 0 || dup2(out, 1) < 0) {
    f = (struct failure){STEP_STDIN, errno};
    goto failed;
  }
  close(in);
  close(out);
  if (chdir("/task") != 0) {
    f = (struct failure){STEP_CHDIR, errno};
    goto failed;
  }
  execvp(argv[0], argv);
  f = (struct failure){STEP_EXEC, errno};
failed:
  if (write(report, &f, sizeof f) < 0) _exit(126);
  _exit(f.step == STEP_EXEC && f.err == ENOENT ? 127 : 126);
}

/* Removes everything under the open folder `dir`, never following a link; returns 0 or an errno. */
static int empty_folder(int dir, int depth) {
  int copy = dup(dir);
  if (copy < 0) return errno;
  DIR *d = fdopendir(copy);
  if (d == NULL) {
    int e = errno;
    close(copy);
    return e;
  }
  int result = 0;
  for (struct dirent *e; (errno = 0, e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(dir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      result = result ? result : errno;
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      if (depth >= MAX_DEPTH) {
        result = result ? result : ELOOP;
        continue;
      }
      /* A folder the program made unreadable is still its own (and so the keeper's) to open. */
      fchmodat(dir, e->d_name, 0700, 0);
      int sub = openat(dir, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub < 0) {
        result = result ? result : errno;
        continue;
      }
      int r = empty_folder(sub, depth + 1);
      close(sub);
      if (r != 0) {
        result = result ? result : r;
        continue;
      }
      if (unlinkat(dir, e->d_name, AT_REMOVEDIR) != 0) result = result ? result : errno;
    } else if (unlinkat(dir, e->d_name, 0) != 0) {
      result = result ? result : errno;
    }
  }
  if (errno != 0 && result == 0) result = errno;
  closedir(d);
  return result;
}

/* Kills every process in the container but this one and reaps them all, including the orphans. */
static void end_everything(void) {
  for (;;) {
    kill(-1, SIGKILL);
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0 && errno == ECHILD) return;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bach-keeper PROGRAM [ARGS...] (then TOKEN and one line per attempt on stdin)\n");
    return 2;
  }
  /* kill(-1) reaches every process of this user that this one can see: only safe alone in a PID
   * namespace, where it is PID 1 (not under dockerd --init, nor with the host's PID namespace). */
  if (getpid() != 1) {
    fprintf(stderr, "bach-keeper: must be PID 1 of its container, in a PID namespace of its own\n");
    return 2;
  }
  /* The program runs as this same user: without this it could read the token from this memory. */
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return 1;
  char *token = NULL;
  size_t token_size = 0;
  ssize_t n = getline(&token, &token_size, stdin);
  if (n <= 1) return 2;
  if (token[n - 1] == '\n') token[n - 1] = '\0';
  char *line = NULL;
  size_t size = 0;
  while ((n = getline(&line, &size, stdin)) > 0) {
    if (line[n - 1] == '\n') line[--n] = '\0';
    char *vars = strchr(line, ' ');
    if (vars != NULL) *vars++ = '\0';
    const char *id = line;

    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return 1;
    pid_t child = fork();
    if (child < 0) return 1;
    if (child == 0) {
      static char none[] = "";
      close(report[0]);
      start_program(vars == NULL ? none : vars, argv + 1, report[1]);
    }
    close(report[1]);
    struct failure f = {STEP_NONE, 0};
    ssize_t got;
    do got = read(report[0], &f, sizeof f);
    while (got < 0 && errno == EINTR);
    close(report[0]);
    if (got != (ssize_t)sizeof f) f = (struct failure){STEP_NONE, 0};

    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    end_everything();

    int scratch_err = 0;
    int scratch = open("/scratch", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (scratch < 0) {
      scratch_err = errno == ENOENT ? 0 : errno;
    } else {
      scratch_err = empty_folder(scratch, 0);
      close(scratch);
    }

    char done[256];
    int len = snprintf(done, sizeof done, "\x1e%s %s %d %s %d %d\n", token, id, code, STEPS[f.step], f.err, scratch_err);
    if (len < 0 || (size_t)len >= sizeof done || write(2, done, (size_t)len) != len) return 1;
  }
  return 0;
}
