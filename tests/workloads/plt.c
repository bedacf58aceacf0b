/*
 * Calls strlen through the PLT in a tight loop, so that a good share of the
 * samples land in the PLT stub itself: perf names it `strlen@plt`.
 * Usage: plt SECONDS. Prints pid=P, then spins.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 5;
	volatile size_t acc = 0;
	const char *s = argv[0];
	struct timespec t0, t;

	printf("pid=%d\n", getpid());
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0;; i++) {
		acc += strlen(s + (i & 1));
		if ((i & 0xfffff) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
				break;
		}
	}
	return (int)acc & 1;
}
