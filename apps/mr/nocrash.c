/* nocrash -- crash.c without the failures (see there). */
#define MR_NOCRASH 1
#include "crash.c"
