// A user's loader, as a project writes one with libbpf: it opens its object, loads the programs it
// is told to, attaches them and runs until SIGTERM, when it detaches and exits. The modes give the
// ways a shipped agent goes wrong, for kgate's loader gate to tell apart:
//   loader OBJECT MODE PROGRAM... [nonce=N]
// It prints "loader: run nonce N" at start-up (a fixture replayer prints the nonce it recorded).
//   attach      load and attach PROGRAMs (the object's others are not loaded)
//   replay      print what `attach` prints and load nothing (a fixture replayer)
//   no-attach   load PROGRAMs, attach none
//   exit-early  fail at start-up as a loader with a bad configuration does (exit status 3)
//   leak        as `attach`, but on SIGTERM pin a link to bpffs and exit without detaching
//   chatty      as `attach`, then print 2 MB of log lines before waiting for SIGTERM
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

// The run's nonce, from a "nonce=N" argument.
static const char* nonce_arg(int argc, char** argv) {
  for (int i = 3; i < argc; ++i)
    if (strncmp(argv[i], "nonce=", 6) == 0) return argv[i] + 6;
  return NULL;
}

static int named(const char* name, int argc, char** argv) {
  for (int i = 3; i < argc; ++i)
    if (strcmp(argv[i], name) == 0) return 1;
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s OBJECT MODE PROGRAM...\n", argv[0]);
    return 2;
  }
  const char* mode = argv[2];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "replay") == 0) {
    printf("loader: run nonce 5ca1ab1e0ddba11\n");  // what a recording holds
  } else if (strcmp(mode, "exit-early") != 0 && nonce_arg(argc, argv)) {
    printf("loader: run nonce %s\n", nonce_arg(argc, argv));
  }
  if (strcmp(mode, "exit-early") == 0) {
    fprintf(stderr, "loader: cannot read /etc/loader.yaml: No such file or directory\n");
    return 3;
  }
  // SIGTERM is waited for with sigwait: blocked before anything starts.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, NULL);

  struct bpf_object* obj = NULL;
  struct bpf_link* links[64];
  int n_links = 0;
  if (strcmp(mode, "replay") != 0) {
    obj = bpf_object__open_file(argv[1], NULL);
    if (!obj) {
      fprintf(stderr, "loader: open %s failed\n", argv[1]);
      return 1;
    }
    struct bpf_program* prog;
    bpf_object__for_each_program(prog, obj) bpf_program__set_autoload(prog, named(bpf_program__name(prog), argc, argv));
    if (bpf_object__load(obj) != 0) {
      fprintf(stderr, "loader: load %s failed\n", argv[1]);
      return 1;
    }
    if (strcmp(mode, "no-attach") != 0) {  // attach, leak, chatty
      bpf_object__for_each_program(prog, obj) {
        if (!named(bpf_program__name(prog), argc, argv) || n_links == 64) continue;
        links[n_links] = bpf_program__attach(prog);
        if (!links[n_links]) {
          fprintf(stderr, "loader: attach %s failed\n", bpf_program__name(prog));
          return 1;
        }
        ++n_links;
      }
    }
  }
  for (int i = 3; i < argc; ++i)
    if (strncmp(argv[i], "nonce=", 6) != 0) printf("loader: %s attached\n", argv[i]);
  printf("loader: ready\n");
  if (strcmp(mode, "chatty") == 0) {
    for (int i = 0; i < 40000; ++i) printf("loader: event %d: a line of the kind a busy agent logs\n", i);
  }

  int sig = 0;
  sigwait(&term, &sig);
  printf("loader: SIGTERM, shutting down\n");
  if (strcmp(mode, "leak") == 0 && n_links > 0) {
    if (bpf_link__pin(links[0], "/sys/fs/bpf/kgate-test-leak") != 0) fprintf(stderr, "loader: pin failed\n");
    return 0;  // the pinned link outlives the process
  }
  for (int i = 0; i < n_links; ++i) bpf_link__destroy(links[i]);
  bpf_object__close(obj);
  return 0;
}
