/* The floor of bench/cgi.sh: THREADS threads each start PROGRAM with
 * posix_spawn (stdout on a pipe read to its end, as a server reads a CGI
 * program's output), wait for it, and again, for SECONDS; prints the
 * programs run per second. The environment is a CGI request's few
 * variables, so the program does what it does under a server.
 *
 *   cc -O2 -pthread -o cgi_floor cgi_floor.c
 *   ./cgi_floor THREADS SECONDS PROGRAM
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *program;
static double seconds;
static atomic_long runs;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static void *loop(void *arg) {
  (void)arg;
  char *argv[] = {(char *)program, NULL};
  char *envp[] = {"GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=GET",
                  "SCRIPT_NAME=/cgi-bin/hello", "QUERY_STRING=",
                  "SERVER_PROTOCOL=HTTP/1.1", "PATH=/usr/local/bin:/usr/bin:/bin",
                  NULL};
  char buf[65536];
  double end = now() + seconds;
  while (now() < end) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) abort();
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    pid_t pid;
    if (posix_spawn(&pid, program, &fa, NULL, argv, envp) != 0) abort();
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    while (read(out[0], buf, sizeof buf) > 0) {
    }
    close(out[0]);
    int status;
    waitpid(pid, &status, 0);
    atomic_fetch_add(&runs, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: cgi_floor THREADS SECONDS PROGRAM\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  seconds = atof(argv[2]);
  program = argv[3];
  pthread_t t[256];
  if (threads < 1 || threads > 256) return 2;
  double start = now();
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, loop, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  printf("%.1f\n", atomic_load(&runs) / (now() - start));
  return 0;
}
