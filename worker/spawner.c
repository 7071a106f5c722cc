/*
 * bach-spawner: starts a worker's programs for it (the process runtime). A fork of the worker, a Node
 * process of a few hundred MB, cost 5-14 ms of its one thread for every program it started; a fork of
 * this small process costs a fraction of a millisecond, and the worker's thread only writes a request.
 * One-run-per-object tasks start a program for every object, so that cost was most of Bach's own.
 *
 * Requests come on stdin, each a 4-byte little-endian length and then NUL-terminated fields:
 *
 *   S ID CWD STDIN STDOUT STDERR ARGC ARG... ENVC NAME=VALUE...   start a program
 *   O ID                                                          the worker opened the program's pipes
 *
 * STDIN is "pipe", "null", "file:PATH" (the program reads the file) or "range:OFFSET:LENGTH:PATH" (a
 * feeder, a child of ours that execs nothing, copies that range of the file into the program's stdin
 * pipe, reading it as its own descriptor 0, so its place there tells how far it got); STDOUT is a file's path,
 * created or truncated; STDERR is "pipe" or "null". ARG... is the program and its arguments; the
 * program is looked up in the PATH of the environment given, as execvp would.
 *
 * Events go to stdout, one line each:
 *
 *   started ID PID IN ERR FEEDER  IN and ERR: this process's descriptors of the pipes' other ends
 *                                 (-1: none); FEEDER: the feeder's pid, or 0
 *   failed ID STEP ERRNO          it could not run: STEP is stdin, stdout, chdir or exec
 *   exited ID STATUS              the raw wait status
 *   fed ID STATUS                 the feeder's: exit 0 when it copied the range (or the program stopped
 *                                 reading), else the errno that stopped it
 *
 * The worker opens /proc/<this pid>/fd/IN and /fd/ERR (a pipe reopened so is the same pipe) and then
 * sends O: until then this process holds those ends, so the program never reads an early end of its
 * input nor writes into a pipe without a reader. Each program runs in a session of its own (its process
 * group is its pid: a kill of the group reaches whatever it started), with the default signal handling
 * and mask. When stdin ends (the worker is gone), this process exits; programs run on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* A request longer than this is refused: no argv and environment of a bachfile come near it. */
#define MAX_REQUEST (4 * 1024 * 1024)
#define MAX_FIELDS 65536

struct program {
  char id[64];
  pid_t pid;
  int in;  /* our end of its stdin pipe, held until O, or -1 */
  int err; /* our end of its stderr pipe, held until O, or -1 */
  int exited;
  int feeder; /* a range's feeder, whose exit is reported as "fed" */
  struct program *next;
};

static struct program *programs;
static int sigchld_pipe[2];

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  ssize_t n = write(sigchld_pipe[1], "c", 1);
  (void)n;
  errno = saved;
}

/* Writes all of `s` to stdout; a worker that stopped reading is gone, and so are we. */
static void say(const char *s) {
  size_t left = strlen(s);
  while (left > 0) {
    ssize_t n = write(1, s, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);
    s += n;
    left -= (size_t)n;
  }
}

static void close_held(struct program *p) {
  if (p->in >= 0) close(p->in);
  if (p->err >= 0) close(p->err);
  p->in = p->err = -1;
}

static const char *env_path(char *const *envp) {
  for (; *envp; envp++)
    if (strncmp(*envp, "PATH=", 5) == 0) return *envp + 5;
  return "/usr/local/bin:/usr/bin:/bin";
}

/* In the child: execs `file` as execvpe would, with PATH from `envp`; returns the errno of the failure. */
static int exec_program(const char *file, char *const *argv, char *const *envp) {
  if (strchr(file, '/')) {
    execve(file, argv, envp);
    return errno;
  }
  const char *path = env_path(envp);
  int found = ENOENT;
  size_t flen = strlen(file);
  for (const char *p = path;; p++) {
    const char *end = strchrnul(p, ':');
    size_t dlen = (size_t)(end - p);
    char buf[4096];
    if (dlen + 1 + flen + 1 <= sizeof buf) {
      if (dlen == 0) {
        memcpy(buf, file, flen + 1); /* an empty entry is the current folder */
      } else {
        memcpy(buf, p, dlen);
        buf[dlen] = '/';
        memcpy(buf + dlen + 1, file, flen + 1);
      }
      execve(buf, argv, envp);
      /* As execvp: a denied one is remembered, a missing one passed over, anything else final. */
      if (errno == EACCES) found = EACCES;
      else if (errno != ENOENT && errno != ENOTDIR) return errno;
    }
    if (*end == '\0') break;
    p = end;
  }
  return found;
}

enum { STEP_STDIN, STEP_STDOUT, STEP_CHDIR, STEP_EXEC };
static const char *const STEPS[] = {"stdin", "stdout", "chdir", "exec"};

/* In the child: reports the step that failed on `report` and exits. */
static void fail_child(int report, int step, int err) {
  int word[2] = {step, err};
  ssize_t n = write(report, word, sizeof word);
  (void)n;
  _exit(127);
}

/* In a child: copies [offset, offset + length) of `path` to stdout (a pipe) and exits 0, or the errno. */
static void feed(const char *path, off_t offset, off_t length) {
  signal(SIGPIPE, SIG_IGN);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || dup2(fd, 0) < 0 || lseek(0, offset, SEEK_SET) < 0) _exit(errno & 0xff);
  /* It execs nothing, so what it inherited stays open unless closed: other programs' pipe ends among them. */
  if (close_range(3, ~0U, 0) < 0)
    for (long i = 3, max = sysconf(_SC_OPEN_MAX); i < max && i < 65536; i++) close((int)i);
  while (length > 0) {
    ssize_t n = sendfile(1, 0, NULL, length < (1 << 30) ? (size_t)length : (size_t)1 << 30);
    if (n < 0 && errno == EINTR) continue;
    /* EPIPE: the program stopped reading, which is its right; 0: the file is shorter, as dd would stop. */
    if (n < 0) _exit(errno == EPIPE ? 0 : errno & 0xff);
    if (n == 0) break;
    length -= n;
  }
  _exit(0);
}

static struct program *remember(const char *id, pid_t pid) {
  struct program *p = calloc(1, sizeof *p);
  if (!p) abort();
  snprintf(p->id, sizeof p->id, "%s", id);
  p->pid = pid;
  p->in = p->err = -1;
  p->next = programs;
  programs = p;
  return p;
}

static void start(char **f, int nf) {
  /* S ID CWD STDIN STDOUT STDERR ARGC ARG... ENVC ENV... (a malformed one fails, so nothing waits on it) */
  char malformed[160];
  snprintf(malformed, sizeof malformed, "failed %.64s exec %d\n", f[1], EINVAL);
  long argc = nf >= 8 ? strtol(f[6], NULL, 10) : 0;
  long envc = argc >= 1 && 7 + argc < nf ? strtol(f[7 + argc], NULL, 10) : -1;
  if (envc < 0 || 8 + argc + envc > nf) {
    say(malformed);
    return;
  }
  const char *id = f[1], *cwd = f[2], *in = f[3], *out = f[4], *err = f[5];
  char **argv = f + 7;
  char **envp = f + 8 + argc;
  /* execve wants argv and envp ended by NULL. */
  char **argv_copy = calloc((size_t)argc + 1, sizeof *argv_copy);
  char **envp_copy = calloc((size_t)envc + 1, sizeof *envp_copy);
  if (!argv_copy || !envp_copy) {
    free(argv_copy);
    free(envp_copy);
    char line[160];
    snprintf(line, sizeof line, "failed %s exec %d\n", id, ENOMEM);
    say(line);
    return;
  }
  memcpy(argv_copy, argv, (size_t)argc * sizeof *argv);
  memcpy(envp_copy, envp, (size_t)envc * sizeof *envp);

  int in_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, report[2] = {-1, -1};
  long long offset = 0, length = 0;
  int range_at = 0;
  int ranged = sscanf(in, "range:%lld:%lld:%n", &offset, &length, &range_at) == 2 && range_at > 0;
  int piped_in = ranged || strcmp(in, "pipe") == 0, piped_err = strcmp(err, "pipe") == 0;
  int ok = pipe2(report, O_CLOEXEC) == 0;
  if (ok && piped_in) ok = pipe2(in_pipe, O_CLOEXEC) == 0;
  if (ok && piped_err) ok = pipe2(err_pipe, O_CLOEXEC) == 0;
  pid_t feeder = 0;
  if (ok && ranged) {
    feeder = fork();
    if (feeder == 0) {
      if (dup2(in_pipe[1], 1) < 0) _exit(errno & 0xff);
      feed(in + range_at, (off_t)offset, (off_t)length);
    }
    if (feeder < 0) ok = 0;
    /* The feeder holds the pipe's writing end now; the program's input ends when it is done. */
    close(in_pipe[1]);
    in_pipe[1] = -1;
  }
  pid_t pid = ok ? fork() : -1;
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    setsid();
    const char *file = strcmp(in, "null") == 0 ? "/dev/null" : strncmp(in, "file:", 5) == 0 ? in + 5 : NULL;
    if (!piped_in && !file) fail_child(report[1], STEP_STDIN, EINVAL);
    int fd0 = piped_in ? in_pipe[0] : open(file, O_RDONLY | O_CLOEXEC);
    if (fd0 < 0 || dup2(fd0, 0) < 0) fail_child(report[1], STEP_STDIN, errno);
    int fd1 = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd1 < 0 || dup2(fd1, 1) < 0) fail_child(report[1], STEP_STDOUT, errno);
    int fd2 = piped_err ? err_pipe[1] : open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd2 < 0 || dup2(fd2, 2) < 0) fail_child(report[1], STEP_STDOUT, errno);
    if (chdir(cwd) < 0) fail_child(report[1], STEP_CHDIR, errno);
    fail_child(report[1], STEP_EXEC, exec_program(argv_copy[0], argv_copy, envp_copy));
  }
  int saved = errno;
  free(argv_copy);
  free(envp_copy);
  if (report[1] >= 0) close(report[1]);
  if (in_pipe[0] >= 0) close(in_pipe[0]);
  if (err_pipe[1] >= 0) close(err_pipe[1]);
  char line[160];
  if (pid < 0) {
    if (report[0] >= 0) close(report[0]);
    if (in_pipe[1] >= 0) close(in_pipe[1]);
    if (err_pipe[0] >= 0) close(err_pipe[0]);
    snprintf(line, sizeof line, "failed %.64s exec %d\n", id, saved);
    say(line);
    return;
  }
  /* The report pipe closes at exec (CLOEXEC), or holds why the program did not run. */
  int word[2];
  ssize_t n;
  do n = read(report[0], word, sizeof word);
  while (n < 0 && errno == EINTR);
  close(report[0]);
  if (feeder > 0) remember(id, feeder)->feeder = 1;
  struct program *p = remember(id, pid);
  if (n == (ssize_t)sizeof word) {
    /* It never ran: its exit is not reported, only this. */
    p->in = p->err = -1;
    if (in_pipe[1] >= 0) close(in_pipe[1]);
    if (err_pipe[0] >= 0) close(err_pipe[0]);
    p->id[0] = '\0';
    snprintf(line, sizeof line, "failed %.64s %s %d\n", id, STEPS[word[0] & 3], word[1]);
    say(line);
    return;
  }
  p->in = in_pipe[1];
  p->err = err_pipe[0];
  snprintf(line, sizeof line, "started %.64s %d %d %d %d\n", id, (int)pid, p->in, p->err, (int)feeder);
  say(line);
}

/* Forgets a program once it has exited and its pipes' ends are closed. */
static void forget_done(void) {
  for (struct program **pp = &programs; *pp;) {
    struct program *p = *pp;
    if (p->exited && p->in < 0 && p->err < 0) {
      *pp = p->next;
      free(p);
    } else {
      pp = &p->next;
    }
  }
}

/*
 * The held ends close only here, never when the program exits: were one closed before the worker
 * opened it, its descriptor's number could be given to the next program's pipe, and the worker would
 * open that one.
 */
static void opened(const char *id) {
  for (struct program *p = programs; p; p = p->next)
    if (p->id[0] && !p->feeder && strcmp(p->id, id) == 0) close_held(p);
  forget_done();
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (struct program *p = programs; p; p = p->next) {
      if (p->pid != pid || p->exited) continue;
      p->exited = 1;
      if (p->id[0]) {
        char line[160];
        snprintf(line, sizeof line, "%s %s %d\n", p->feeder ? "fed" : "exited", p->id, status);
        say(line);
      }
      break;
    }
  }
  forget_done();
}

/* Handles the requests whole in buf[0..*len), keeping a partial one at the front. */
static void handle(char *buf, size_t *len) {
  size_t at = 0;
  static char *fields[MAX_FIELDS];
  while (*len - at >= 4) {
    uint32_t size;
    memcpy(&size, buf + at, 4);
    if (size > MAX_REQUEST) _exit(2);
    if (*len - at - 4 < size) break;
    char *body = buf + at + 4;
    int nf = 0;
    for (size_t i = 0; i < size && nf < MAX_FIELDS;) {
      char *end = memchr(body + i, '\0', size - i);
      if (!end) break;
      fields[nf++] = body + i;
      i = (size_t)(end - body) + 1;
    }
    if (nf >= 2 && strcmp(fields[0], "S") == 0) start(fields, nf);
    else if (nf >= 2 && strcmp(fields[0], "O") == 0) opened(fields[1]);
    at += 4 + size;
  }
  memmove(buf, buf + at, *len - at);
  *len -= at;
}

int main(void) {
  if (pipe2(sigchld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) return 1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  size_t cap = 64 * 1024, len = 0;
  char *buf = malloc(cap);
  if (!buf) return 1;
  for (;;) {
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = sigchld_pipe[0], .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[1].revents) {
      char drain[64];
      while (read(sigchld_pipe[0], drain, sizeof drain) > 0) {}
      reap();
    }
    if (fds[0].revents) {
      if (cap - len < 64 * 1024) {
        if (cap >= MAX_REQUEST * 2) _exit(2);
        cap *= 2;
        char *bigger = realloc(buf, cap);
        if (!bigger) return 1;
        buf = bigger;
      }
      ssize_t n = read(0, buf + len, cap - len);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 0;
      len += (size_t)n;
      handle(buf, &len);
    }
  }
}
