// The C++ no-frame-pointer workload (g++ -O2 -fomit-frame-pointer): a
// virtual call, a template and std::vector work on the way to the shared
// library's hot leaf.
//   main -> Runner::run -> Stage<Lib>::apply (virtual) -> Lib::step -> lib_warm -> lib_hot
//   main -> Runner::run -> Stage<Sum>::apply (virtual) -> Sum::step (vector)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <unistd.h>
#include <vector>

extern "C" uint64_t lib_warm(uint64_t x);

struct Lib {
	__attribute__((noinline)) static uint64_t step(uint64_t x) { return lib_warm(x) + 1; }
};

struct Sum {
	__attribute__((noinline)) static uint64_t step(uint64_t x)
	{
		std::vector<uint64_t> v(512, x);
		uint64_t s = 0;
		for (int r = 0; r < 8; r++)
			for (auto &e : v)
				s += (e = e * 31 + r);
		return s;
	}
};

struct StageBase {
	virtual ~StageBase() = default;
	virtual uint64_t apply(uint64_t x) = 0;
};

template <typename T> struct Stage : StageBase {
	__attribute__((noinline)) uint64_t apply(uint64_t x) override { return T::step(x) ^ 3; }
};

volatile uint64_t sink;

struct Runner {
	std::vector<std::unique_ptr<StageBase>> stages;
	__attribute__((noinline)) void run(double secs)
	{
		auto t0 = std::chrono::steady_clock::now();
		for (uint64_t i = 0;; i++) {
			sink = stages[i % stages.size()]->apply(sink + i) + 1;
			if ((i & 1023) == 0 &&
			    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > secs)
				return;
		}
	}
};

int main(int argc, char **argv)
{
	std::printf("pid=%d\n", getpid());
	std::fflush(stdout);
	Runner r;
	r.stages.emplace_back(new Stage<Lib>());
	r.stages.emplace_back(new Stage<Sum>());
	r.run(argc > 1 ? std::atof(argv[1]) : 10);
	return (int)(sink & 1);
}
