/*
 * A CPU-bound workload whose hot functions and their shares are known, for
 * the end-to-end tests. Build with clang -O2 -fno-omit-frame-pointer (gcc -O2
 * drops leaf frames; see shared/notes/bpf-facts.md).
 *
 * usage: workload MODE SECONDS
 *   mix      main -> driver -> alpha (3 parts) / beta (1 part)
 *   switch   alpha for the first half, beta for the second
 *   threads  main thread runs alpha; a second thread runs beta
 *   syscall  a loop of getppid() system calls (kernel + user stacks)
 *   fixed    SECONDS is instead a number of mix rounds: fixed work, for
 *            measuring slowdown (scripts/bench-overhead.py)
 * It prints "pid=P tid=T" (T: the beta thread in `threads` mode, else P),
 * then runs for SECONDS and exits.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static volatile pid_t beta_tid;
#define UNIT 200000UL

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void alpha(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i * 3;
}

__attribute__((noinline)) void beta(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += i ^ 5;
}

__attribute__((noinline)) void sys_loop(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		sink += getppid();
}

static void *beta_thread(void *arg)
{
	double end = *(double *)arg;
	beta_tid = syscall(SYS_gettid);
	while (now() < end)
		beta(UNIT);
	return NULL;
}

__attribute__((noinline)) void driver(const char *mode, double seconds)
{
	double start = now(), end = start + seconds;

	if (!strcmp(mode, "mix")) {
		/*
		 * Rounds of varying length (3:1 on average and in every round):
		 * a fixed round can phase-lock with a sampler's period, and two
		 * samplers at one rate then see different shares however long
		 * they run (CI saw beta at 14% and 18% side by side).
		 */
		unsigned long x = 88172645463325252UL;
		while (now() < end) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			unsigned long u = UNIT / 2 + x % UNIT;
			alpha(3 * u);
			beta(u);
		}
	} else if (!strcmp(mode, "switch")) {
		while (now() < start + seconds / 2)
			alpha(UNIT);
		while (now() < end)
			beta(UNIT);
	} else if (!strcmp(mode, "fixed")) {
		for (double i = 0; i < seconds; i++) {
			alpha(3 * UNIT);
			beta(UNIT);
		}
	} else if (!strcmp(mode, "syscall")) {
		while (now() < end)
			sys_loop(1000);
	} else if (!strcmp(mode, "threads")) {
		while (now() < end)
			alpha(UNIT);
	}
}

int main(int argc, char **argv)
{
	pthread_t t;
	double seconds, end;

	if (argc != 3) {
		fprintf(stderr, "usage: %s mix|switch|threads|syscall|fixed SECONDS\n", argv[0]);
		return 2;
	}
	seconds = atof(argv[2]);
	end = now() + seconds;
	if (!strcmp(argv[1], "threads")) {
		pthread_create(&t, NULL, beta_thread, &end);
		while (!beta_tid)
			usleep(1000);
	} else {
		beta_tid = getpid();
	}
	printf("pid=%d tid=%d\n", getpid(), beta_tid);
	fflush(stdout);
	driver(argv[1], seconds);
	if (!strcmp(argv[1], "threads"))
		pthread_join(t, NULL);
	return 0;
}
