// An executable that needs a library of its own (libkgate-gone.so beside it, found
// through RUNPATH $ORIGIN): the library closure must find it there, or say it is missing.
int kgate_gone(void);

int main(void) { return kgate_gone() == 7 ? 0 : 1; }
