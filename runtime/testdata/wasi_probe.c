/* Exercises the WASI host. argv[1] picks what to do:
 *   args      print each argument on its own line
 *   env       print each environment entry on its own line
 *   exit N    exit with code N
 *   stderr    write "to stderr" on stderr and "to stdout" on stdout
 *   cat       copy stdin to stdout
 *   sleep MS  print "sleeping MS ms", sleep MS milliseconds (poll_oneoff), then print
 *             "slept >= MS ms" if the monotonic clock agrees
 *   spin      print "spinning", then loop forever without calling the host
 *   clock     print "realtime ok" when the realtime clock is after 2020
 *   random    print 32 random bytes as hex
 *   fs        try to open, create and list files; print each result */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void try_open(const char *path, const char *mode) {
  FILE *f = fopen(path, mode);
  if (f == NULL) {
    printf("fopen %s %s: failed: %s\n", path, mode, strerror(errno));
  } else {
    printf("fopen %s %s: OPENED\n", path, mode);
    fclose(f);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *what = argv[1];
  if (strcmp(what, "args") == 0) {
    for (int i = 0; i < argc; i++) printf("%s\n", argv[i]);
  } else if (strcmp(what, "env") == 0) {
    for (char **e = environ; *e != NULL; e++) printf("%s\n", *e);
  } else if (strcmp(what, "exit") == 0 && argc > 2) {
    return atoi(argv[2]);
  } else if (strcmp(what, "stderr") == 0) {
    fputs("to stderr", stderr);
    fputs("to stdout", stdout);
  } else if (strcmp(what, "cat") == 0) {
    char buf[1000];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
  } else if (strcmp(what, "sleep") == 0 && argc > 2) {
    long ms = atol(argv[2]);
    struct timespec a, b, d = {ms / 1000, (ms % 1000) * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &a);
    printf("sleeping %ld ms\n", ms);
    fflush(stdout);
    nanosleep(&d, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    long took = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
    printf(took >= ms ? "slept >= %ld ms\n" : "woke early after %ld ms\n", took >= ms ? ms : took);
  } else if (strcmp(what, "spin") == 0) {
    puts("spinning");
    fflush(stdout);
    volatile unsigned long n = 0;
    for (;;) n++;
  } else if (strcmp(what, "clock") == 0) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    printf(t.tv_sec > 1577836800 ? "realtime ok\n" : "realtime wrong: %lld\n", (long long)t.tv_sec);
  } else if (strcmp(what, "random") == 0) {
    unsigned char r[32];
    if (getentropy(r, sizeof r) != 0) return 3;
    for (int i = 0; i < 32; i++) printf("%02x", r[i]);
    printf("\n");
  } else if (strcmp(what, "fs") == 0) {
    try_open("/etc/passwd", "r");
    try_open("/work/main/deno.json", "r");
    try_open("probe-created.txt", "w");
    try_open("/tmp/probe-created.txt", "w");
    DIR *d = opendir("/");
    printf(d == NULL ? "opendir /: failed\n" : "opendir /: OPENED\n");
    if (d != NULL) closedir(d);
  } else {
    return 2;
  }
  return 0;
}
