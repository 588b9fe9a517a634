// The uprobe target a spec ships into the guest (tests/objects/*.json, "files"): it passes the
// nonce it is given (argv[1], hex) to target_fn, where the test object's up_target reads it.
#include <stdlib.h>

__attribute__((noinline)) unsigned long long target_fn(unsigned long long nonce) {
  __asm__ volatile("" : : "r"(nonce) : "memory");
  return nonce ^ 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  return target_fn(strtoull(argv[1], NULL, 16)) == 1 ? 3 : 0;
}
