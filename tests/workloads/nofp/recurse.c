/*
 * Deep recursion without frame pointers: main -> run -> recurse xN -> leaf.
 * Usage: recurse SECONDS [N] (N: 100 by default).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t sink;

__attribute__((noinline)) uint64_t leaf(uint64_t x)
{
	for (int i = 0; i < 20000; i++)
		x = x * 6364136223846793005ULL + i;
	return x;
}

__attribute__((noinline)) uint64_t recurse(int depth, uint64_t x)
{
	uint64_t y = depth == 0 ? leaf(x) : recurse(depth - 1, x + depth);
	return y ^ (uint64_t)depth;
}

__attribute__((noinline)) void run(double secs, int depth)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		sink = recurse(depth - 1, sink);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
			return;
	}
}

int main(int argc, char **argv)
{
	printf("pid=%d\n", getpid());
	fflush(stdout);
	run(argc > 1 ? atof(argv[1]) : 10, argc > 2 ? atoi(argv[2]) : 100);
	return (int)(sink & 1);
}
