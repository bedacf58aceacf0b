/*
 * Calls labs through the PLT in a tight loop, so that a good share of the
 * samples land in the PLT stub itself: perf names it `labs@plt` (where it
 * synthesizes stub names; `_init` where it does not). The callee is as
 * cheap as a function gets: calling strlen instead, an AMD EPYC put no
 * sample in the stub (perf neither); with labs, about a tenth (perf too).
 * Usage: plt SECONDS. Prints pid=P, then spins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	volatile size_t acc = 0;
	struct timespec t0, t;

	printf("pid=%d\n", getpid());
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0;; i++) {
		acc += labs(i - 5);
		if ((i & 0xfffff) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
				break;
		}
	}
	return (int)acc & 1;
}
