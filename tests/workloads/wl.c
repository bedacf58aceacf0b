/*
 * The 60/30/10 workload of the upstream profile.py captures
 * (tests/data/upstream): main -> spin_outer -> leaf_sixty / leaf_thirty /
 * leaf_ten -> burn, spending 60%, 30% and 10% of its time under each leaf.
 * Built with clang -O0 -fno-omit-frame-pointer so every frame is walked.
 *
 * usage: wl SECONDS   (prints "pid=P" once running)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

void burn(long n)
{
	for (long i = 0; i < n; i++)
		sink += i;
}

void leaf_sixty(void) { burn(600000); }
void leaf_thirty(void) { burn(300000); }
void leaf_ten(void) { burn(100000); }

void spin_outer(void)
{
	leaf_sixty();
	leaf_thirty();
	leaf_ten();
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 10;
	printf("pid=%d\n", getpid());
	fflush(stdout);
	double end = now() + secs;
	while (now() < end)
		spin_outer();
	return 0;
}
