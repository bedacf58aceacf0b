/*
 * Loads the shared library after profiling started: spins in spin_before
 * for DELAY seconds, then dlopen()s LIB and spins through it:
 *   main -> use_lib -> lib_warm -> lib_hot
 * Usage: dlopen LIB DELAY SECONDS. No frame pointers.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile uint64_t sink;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) uint64_t spin_before(double until)
{
	uint64_t x = 1;
	while (now() < until)
		for (int i = 0; i < 100000; i++)
			x = x * 33 + i;
	return x;
}

__attribute__((noinline)) uint64_t use_lib(uint64_t (*warm)(uint64_t), double until)
{
	uint64_t x = 1;
	while (now() < until)
		x = warm(x) + 1;
	return x;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	printf("pid=%d\n", getpid());
	fflush(stdout);
	double t0 = now();
	sink = spin_before(t0 + atof(argv[2]));
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	uint64_t (*warm)(uint64_t) = (uint64_t(*)(uint64_t))dlsym(lib, "lib_warm");
	sink = use_lib(warm, t0 + atof(argv[3]));
	return (int)(sink & 1);
}
