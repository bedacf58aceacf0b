/* The shared library of the no-frame-pointer workloads: the hot leaf. */
#include <stdint.h>

__attribute__((noinline)) uint64_t lib_hot(uint64_t x)
{
	for (int i = 0; i < 2000; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	return x;
}

__attribute__((noinline)) uint64_t lib_warm(uint64_t x)
{
	return lib_hot(x) ^ 7;
}
