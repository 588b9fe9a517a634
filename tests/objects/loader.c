// A user's loader, as a project writes one with libbpf: it opens its object, loads the programs it
// is told to, attaches them and runs until SIGTERM, when it detaches and exits. The modes give the
// ways a shipped agent goes wrong, for kgate's loader gate to tell apart:
//   loader OBJECT MODE PROGRAM... [nonce=N] [nonce-file=PATH] [nonce-map=PINNED_PATH]
// It prints "loader: run nonce N" at start-up (a fixture replayer prints the nonce it recorded).
//   attach      load and attach PROGRAMs (the object's others are not loaded)
//   replay      print what `attach` prints and load nothing (a fixture replayer)
//   no-attach   load PROGRAMs, attach none
//   exit-early  fail at start-up as a loader with a bad configuration does (exit status 3)
//   leak        as `attach`, but on SIGTERM pin a link to bpffs and exit without detaching
//   chatty      as `attach`, then print 2 MB of log lines before waiting for SIGTERM
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The value of a "KEY=VALUE" argument, or NULL.
static const char* arg_value(const char* key, int argc, char** argv) {
  const size_t n = strlen(key);
  for (int i = 3; i < argc; ++i)
    if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
  return NULL;
}

static const char* nonce_arg(int argc, char** argv) { return arg_value("nonce", argc, argv); }

// Where a loader keeps what it was told: "nonce-file=PATH" writes the nonce into PATH, and
// "nonce-map=PATH" pins an array map at PATH whose one value holds 8 bytes of 0xaa and then the
// nonce as a little-endian u64. A replayer does the same with the nonce it recorded.
static int keep_nonce(const char* nonce, int argc, char** argv) {
  const char* file = arg_value("nonce-file", argc, argv);
  if (file) {
    FILE* f = fopen(file, "w");
    if (!f || fprintf(f, "run nonce %s\n", nonce) < 0 || fclose(f) != 0) {
      fprintf(stderr, "loader: cannot write %s\n", file);
      return 1;
    }
  }
  const char* pin = arg_value("nonce-map", argc, argv);
  if (pin) {
    unsigned long long v = strtoull(nonce, NULL, 16);
    unsigned char value[16];
    memset(value, 0xaa, 8);
    for (int i = 0; i < 8; ++i) value[8 + i] = (unsigned char)(v >> (8 * i));
    int key = 0;
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "loader_nonce", sizeof key, sizeof value, 1, NULL);
    if (fd < 0 || bpf_map_update_elem(fd, &key, value, BPF_ANY) != 0 || bpf_obj_pin(fd, pin) != 0) {
      fprintf(stderr, "loader: cannot pin the nonce map at %s\n", pin);
      return 1;
    }
  }
  return 0;
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
  const char* recorded = strcmp(mode, "replay") == 0 ? "5ca1ab1e0ddba11" : nonce_arg(argc, argv);
  if (recorded && keep_nonce(recorded, argc, argv) != 0) return 1;
  for (int i = 3; i < argc; ++i)
    if (strncmp(argv[i], "nonce", 5) != 0) printf("loader: %s attached\n", argv[i]);
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
