/*
 * A C program without frame pointers (built -O2 -fomit-frame-pointer
 * -fno-inline -fno-optimize-sibling-calls) whose hot function is four calls
 * deep and one call crosses into a shared library:
 *   main -> run -> level1 -> level2 -> (lib) lib_warm -> lib_hot   ~75%
 *   main -> run -> level1 -> side                                 ~25%
 * Usage: nofp SECONDS. Prints pid=P, then spins.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

uint64_t lib_warm(uint64_t x);

volatile uint64_t sink;

__attribute__((noinline)) uint64_t side(uint64_t x)
{
	for (int i = 0; i < 2000; i++)
		x = (x ^ (x >> 7)) * 31 + i;
	return x + 1;
}

__attribute__((noinline)) uint64_t level2(uint64_t x)
{
	uint64_t y = lib_warm(x);
	return y + 3;
}

__attribute__((noinline)) uint64_t level1(uint64_t x, int i)
{
	uint64_t y = (i & 3) == 0 ? side(x) : level2(x);
	return y ^ 5;
}

__attribute__((noinline)) void run(double secs)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0;; i++) {
		sink = level1(sink + i, i);
		if ((i & 1023) == 0) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec + (t.tv_nsec - t0.tv_nsec) / 1e9 > secs)
				return;
		}
	}
}

int main(int argc, char **argv)
{
	printf("pid=%d\n", getpid());
	fflush(stdout);
	run(argc > 1 ? atof(argv[1]) : 10);
	return (int)(sink & 1);
}
