// A library of the user's own, next to their loader (tests/objects/needs-gone.c finds it through
// its RUNPATH, $ORIGIN): kgate ships it into the guest beside the loader.
int kgate_gone(void) { return 7; }
