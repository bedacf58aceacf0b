/*
 * Spins in before_exec_spin() for SECONDS, then execs PROGRAM ARGS...,
 * keeping its pid: the exec case of the process model's tests.
 *
 * usage: exec_after SECONDS PROGRAM [ARGS...]   (prints "pid=P" first)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

__attribute__((noinline)) void before_exec_spin(void)
{
	for (long i = 0; i < 100000; i++)
		sink += i;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s SECONDS PROGRAM [ARGS...]\n", argv[0]);
		return 2;
	}
	double end = now() + atof(argv[1]);
	printf("pid=%d\n", getpid());
	fflush(stdout);
	while (now() < end)
		before_exec_spin();
	execv(argv[2], argv + 2);
	perror("execv");
	return 1;
}
